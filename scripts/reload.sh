#!/usr/bin/env bash
# reload.sh — scenario "reload": the Secret is a volume and the process follows the file
# (--reload --mysecret-file). It starts with the wrong credential (1234) and WAITS — no
# listener, not Ready, `RELOAD(n): ... nok` every --retry-interval — instead of crashing.
# Once the Secret is fixed (4321) and the kubelet has rewritten the volume, the process
# picks the new value up and starts serving: the same process, no restart, no redeploy.
#
# Two negative controls run beside it, started the same way and fixed at the same moment;
# neither ever sees the new value:
#   reload-env      MYSECRET from the Secret (secretKeyRef) + --reload: an environment
#                   variable never changes inside a running process
#   reload-subpath  the key mounted with subPath: the kubelet bind-mounts the file it
#                   resolved at start and never updates a subPath mount
#
#   local (default)  a directory laid out and updated exactly as the kubelet's AtomicWriter
#                    does (scripts/lib/kubelet-secret.sh); the subPath control reads a hard
#                    link of the file resolved at start, the inode a bind mount keeps. The
#                    file watch wakes the start-up wait: it serves milliseconds after the
#                    update. --retry-interval 500ms, so that the controls re-check often.
#   --kube           k8s/overlays/volume-reload, env-reload and subpath, each in its own
#                    namespace, the Secrets patched together; the kubelet delivers the change
#                    on its next sync (often 30-90 s). "Ready" is the pods' Ready condition
#                    (readiness probe every 1 s; minReadySeconds delays only availability).
#   --kube --nudge   the same, each Secret patched, then scripts/nudge.sh run on it (same
#                    KUBECTL, --context, namespace): rows reload-nudge, reload-env-nudge,
#                    reload-subpath-nudge. The controls are patched and nudged first, the
#                    volume case last, its seconds counted from its `kubectl patch`, the
#                    nudge included, its wait polling every 0.2 s (at most NUDGE_TIMEOUT).
#                    nudge.sh must nudge the volume case's pods and report the controls'
#                    as consumers it cannot help: they must still never see the new value.
#   --kube --nudger  the same, with the controller: k8s/nudger deployed into each namespace
#                    first (Ready once it has listed), then only the patches; rows
#                    reload-nudger, reload-env-nudger, reload-subpath-nudger. The nudger must
#                    annotate the volume case's pods and log the controls' as consumers it
#                    cannot help; seconds from the patch, polling every 0.2 s.
# Reported per row: failed requests once the service had answered (expected 0), seconds from
# the fix until it serves (controls: never), restarts (expected 0, same PID / pod).
#
# Usage:
#   scripts/reload.sh [--kube [--context NAME] [--nudge|--nudger]] [--no-controls] [-h|--help]
#
#   --nudge, --nudger  (with --kube) the nudged delivery, by nudge.sh or by the controller;
#                    locally a usage error (the update is written at once: nothing to nudge)
#   --no-controls    run the volume case only
#
# Prints one CONTROL line per control (reload-env, reload-subpath; -nudge, -nudger with
# those), then the RESULT line (reload[-nudge|-nudger]; its verdict covers the controls).
# Exit status: 0 every outcome as expected, 1 otherwise, 2 bad arguments or no cluster.
#
# Environment: HELLO_PATH_BIN, CARGO, WATCH_INTERVAL [unset], RETRY_INTERVAL [500ms],
# CONTROL_SECONDS [3 locally, 30 with --kube: how long the controls are watched after the
# volume case served]; KUBECTL, KUSTOMIZE, IMAGE, KUBE_TIMEOUT, SECRET_TIMEOUT,
# NUDGE_TIMEOUT, NUDGER_IMAGE, KEEP_NAMESPACE (--kube): scripts/lib/local.sh and kube.sh.
set -o errexit -o nounset -o pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh" # messages, waits, options, clean-up
# shellcheck source-path=SCRIPTDIR source=lib/local.sh
source "${LIB_DIR}/local.sh" # the binary as the pod, a kubelet-style Secret directory
# shellcheck source-path=SCRIPTDIR source=lib/kube.sh
source "${LIB_DIR}/kube.sh" # the same on a cluster: kubectl, namespaces, pods, probe pod
# shellcheck source-path=SCRIPTDIR source=lib/probe.sh
source "${LIB_DIR}/probe.sh" # what the probe measured, and the RESULT line

CONTROLS=true

extra_arg() {
  case "$1" in
    --no-controls)
      CONTROLS=false
      EXTRA_SHIFT=1
      ;;
    *) nudge_arg "$@" ;;
  esac
}
check_args() { nudge_check; }

_logged() { grep -qF "$2" "$1"; }
_both_logged() { _logged "$1" "$3" && _logged "$2" "$3"; }
_either_logged() { _logged "$1" "$3" || _logged "$2" "$3"; }
_count_reload() { grep -c 'RELOAD([0-9]*): Connection to remote service: nok' "$1" || true; }
_last_attempt() { grep -o 'RELOAD([0-9]*)' "$1" | tail -n 1 | tr -dc '0-9'; }

# A control is right when it never served, still runs (same PID) and kept re-checking.
control_result() {
  local row=$1 pid=$2 logf=$3 probe=$4 t0=$5 tfix=$6 before=$7 what=$8
  local failed total served kinds=- timeline after verdict=ok note
  read -r failed total served kinds < <(probe_counts "${probe}")
  timeline=$(probe_timeline "${probe}" "${t0}" "${tfix}")
  after=$(_count_reload "${logf}")
  note="${what}: still waiting ($(_last_attempt "${logf}" | sed 's/^/RELOAD(/;s/$/)/') nok), same PID ${pid}, never served: only a restart helps"
  if [[ "${served}" != 0 ]] || grep -qF 'Web service accessible at' "${logf}"; then
    verdict=unexpected
    note="${what}: it served, but it cannot have seen the new value"
  elif ! proc_alive "${pid}"; then
    verdict=unexpected
    note="${what}: the process is gone"
  elif ((after <= before)); then
    verdict=unexpected
    note="${what}: it stopped re-checking after the fix"
  fi
  control_row "${row}" "${failed}" "${total}" never 0 "${pid}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

run_local() {
  local control_seconds=${CONTROL_SECONDS:-3}
  local vol="${WORK_DIR}/secret-volume" sub="${WORK_DIR}/subpath"
  secret_dir_init "${vol}" mysecret 1234
  log "Secret volume ${vol}: mysecret -> ..data/mysecret, ..data -> $(readlink "${vol}/..data") (1234: wrong)"
  local -a common=(--reload --retry-interval "${RETRY_INTERVAL}" "${WATCH_ARGS[@]}")

  local p_vol p_env p_sub
  p_vol=$(free_port)
  app_start reload "${p_vol}" -- "${common[@]}" --mysecret-file "${vol}/mysecret"
  local pid_vol=${APP_PID} log_vol=${APP_LOG}
  probe_start_local reload "${p_vol}"
  local probe_vol=${PROBE_OUT} probe_vol_pid=${PROBE_PID} t0_vol=${PROBE_T0}

  local pid_env="" log_env="" probe_env="" probe_env_pid="" t0_env=""
  local pid_sub="" log_sub="" probe_sub="" probe_sub_pid="" t0_sub=""
  if [[ "${CONTROLS}" == true ]]; then
    # subPath: the kubelet bind-mounts the file it resolved at start (this inode); a hard
    # link keeps that inode, whatever happens to ..data later.
    mkdir -p "${sub}"
    ln "$(readlink -f "${vol}/mysecret")" "${sub}/mysecret" 2>/dev/null ||
      cp "$(readlink -f "${vol}/mysecret")" "${sub}/mysecret"
    p_env=$(free_port)
    app_start reload-env "${p_env}" MYSECRET=1234 -- "${common[@]}"
    pid_env=${APP_PID} log_env=${APP_LOG}
    probe_start_local reload-env "${p_env}"
    probe_env=${PROBE_OUT} probe_env_pid=${PROBE_PID} t0_env=${PROBE_T0}
    p_sub=$(free_port)
    app_start reload-subpath "${p_sub}" -- "${common[@]}" --mysecret-file "${sub}/mysecret"
    pid_sub=${APP_PID} log_sub=${APP_LOG}
    probe_start_local reload-subpath "${p_sub}"
    probe_sub=${PROBE_OUT} probe_sub_pid=${PROBE_PID} t0_sub=${PROBE_T0}
  fi

  wait_for "the process to wait for a valid credential (RELOAD(1))" 10 0.05 _logged "${log_vol}" 'RELOAD(1)' ||
    die "PID ${pid_vol} did not log RELOAD(1)"
  if [[ "${CONTROLS}" == true ]]; then
    wait_for "the controls to wait too (RELOAD(1))" 10 0.05 \
      _both_logged "${log_env}" "${log_sub}" 'RELOAD(1)' ||
      die "a control did not log RELOAD(1)"
  fi
  # Every probe (the last one started last) shows at least one second before the fix.
  probe_wait_seconds "${probe_sub:-${probe_vol}}" 1 || true

  log "the fix: the Secret becomes 4321, written kubelet-style (new ..<timestamp>/, ..data_tmp renamed over ..data)"
  local before_env=0 before_sub=0 t_fix t_ready served_ok=false
  [[ "${CONTROLS}" != true ]] || before_env=$(_count_reload "${log_env}")
  [[ "${CONTROLS}" != true ]] || before_sub=$(_count_reload "${log_sub}")
  t_fix=$(now_ms)
  secret_dir_update "${vol}" mysecret 4321
  log "   ${vol}/mysecret now reads $(cat "${vol}/mysecret") (..data -> $(readlink "${vol}/..data"))"
  if [[ "${CONTROLS}" == true ]]; then
    log "   the env control keeps MYSECRET=1234 (set at its start); the subPath file still reads $(cat "${sub}/mysecret")"
  fi
  if wait_for "PID ${pid_vol} to serve (Web service accessible at)" 10 0.01 _logged "${log_vol}" 'Web service accessible at'; then
    served_ok=true
  fi
  t_ready=$(now_ms)
  grep -E 'RELOAD\([0-9]+\): Connection to remote service: ok|Web service accessible' "${log_vol}" |
    sed 's/^/    /' || true

  local controls_ok=true
  if [[ "${CONTROLS}" == true ]]; then
    observe_for "a control serves with the new value" "${control_seconds}" 0.1 \
      _either_logged "${log_env}" "${log_sub}" 'Web service accessible at' ||
      controls_ok=false
  fi
  probe_wait_seconds "${probe_vol}" 1 || true
  probe_stop "${probe_vol_pid}"
  if [[ "${CONTROLS}" == true ]]; then
    probe_stop "${probe_env_pid}"
    probe_stop "${probe_sub_pid}"
    local rc_env=0 rc_sub=0
    control_result reload-env "${pid_env}" "${log_env}" "${probe_env}" "${t0_env}" "${t_fix}" "${before_env}" \
      "env var MYSECRET" || rc_env=1
    control_result reload-subpath "${pid_sub}" "${log_sub}" "${probe_sub}" "${t0_sub}" "${t_fix}" "${before_sub}" \
      "subPath file" || rc_sub=1
    ((rc_env == 0 && rc_sub == 0)) || controls_ok=false
  fi

  local failed total served kinds=- timeline seconds verdict=ok note
  read -r failed total served kinds < <(probe_counts "${probe_vol}")
  timeline=$(probe_timeline "${probe_vol}" "${t0_vol}" "${t_fix}")
  seconds=$(fmt_secs $((t_ready - t_fix)))
  note="waited (RELOAD, no listener), served $(fmt_secs $((t_ready - t_fix)))s after the kubelet-style update, same PID ${pid_vol}: no restart"
  if [[ "${served_ok}" != true || "${served}" != 1 ]]; then
    verdict=unexpected
    seconds=never
    note="the process did not serve after the fix"
  elif ! proc_alive "${pid_vol}"; then
    verdict=unexpected
    note="PID ${pid_vol} is gone"
  elif ((failed != 0)); then
    verdict=unexpected
    note="${failed} requests failed after it had served: $(kinds_words "${kinds}")"
  elif [[ "${controls_ok}" != true ]]; then
    verdict=unexpected
    note="served $(fmt_secs $((t_ready - t_fix)))s after the fix, but a negative control went wrong (see its CONTROL row)"
  fi
  result reload "${failed}" "${total}" "${seconds}" 0 "${pid_vol}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

# --- kube ---------------------------------------------------------------------------------

# _kube_waiting — the pods of NS exist, none is Ready, the first one logged "RELOAD: ...
# nok" (it waits for a valid credential).
_kube_waiting() {
  local pods pod
  pods=$(kube_snapshot)
  pod=$(awk 'NF { print $1; exit }' <<<"${pods}")
  [[ -n "${pod}" ]] || return 1
  ! awk '$3 == "True" { f = 1 } END { exit !f }' <<<"${pods}" || return 1
  kube_poll -n "${NS}" logs "${pod}" 2>/dev/null | has 'RELOAD'
}
_kube_controls_ready() {
  local ns
  for ns in "$@"; do
    NS=${ns}
    if kube_any_ready; then
      return 0
    fi
  done
  return 1
}

# kube_control_result ROW NS PROBE_T0 BASE_UIDS T_FIX WHAT [NUDGED CANNOT_HELP WHY]
#   A control is right when it never became Ready, its pods are the same and never
#   restarted; nudged (NUDGED not empty: what nudge.sh or the nudger reported), when it
#   annotated none of its pods and named every one as a consumer it cannot help.
kube_control_result() {
  local row=$1 base=$4 tfix=$5 what=$6 nudged=${7:-} helpless=${8:-} why=${9:-}
  NS=$2
  local failed total served kinds=- timeline restarts uids pod last replicas verdict=ok note nudge_note=""
  PROBE_POD="probe-${row}"
  kube_probe_collect "${WORK_DIR}/probe-${row}.out"
  read -r failed total served kinds < <(probe_counts "${WORK_DIR}/probe-${row}.out")
  timeline=$(probe_timeline "${WORK_DIR}/probe-${row}.out" "$3" "${tfix}")
  uids=$(kube_uids)
  restarts=$(kube_restarts "${base}")
  replicas=$(kube_replicas)
  pod=$(kube_snapshot | awk 'NF { print $1; exit }')
  last=$(kube -n "${NS}" logs "${pod}" 2>/dev/null | grep -o 'RELOAD([0-9]*)' | tail -n 1 || true)
  [[ -z "${nudged}" ]] || nudge_note="${NUDGER_NAME} cannot help it (${helpless} of ${replicas} pods: ${why}), "
  note="${what}: ${nudge_note}still waiting (${last:-?} nok), same pods, never Ready: only a restart helps"
  if [[ "${served}" != 0 ]] || kube_any_ready; then
    verdict=unexpected
    note="${what}: it became Ready, but it cannot have seen the new value"
  elif [[ "${uids}" != "${base}" || "${restarts}" != 0 ]]; then
    verdict=unexpected
    note="${what}: pods were replaced or restarted"
  elif [[ -n "${nudged}" && ("${nudged}" != 0 || "${helpless}" != "${replicas}") ]]; then
    verdict=unexpected
    note="${what}: ${NUDGER_NAME} nudged ${nudged} and reported ${helpless} of ${replicas} pods as consumers it cannot help (expected 0 and ${replicas})"
  fi
  control_row "${row}" "${failed}" "${total}" never "${restarts}" "$(kube_names)" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

# _kube_fix_nudged VALUE — the nudged change of NS's Secret: kubectl patch, then
#   scripts/nudge.sh (kube_nudge sets NUDGED, CANNOT_HELP, CANNOT_HELP_WHY); sets T_FIX (ms,
#   just before the patch) and T_NUDGED (once nudge.sh is done).
_kube_fix_nudged() {
  T_FIX=$(now_ms)
  kube_secret_set "$1"
  kube_nudge
  T_NUDGED=$(now_ms)
}

run_kube() {
  local control_seconds=${CONTROL_SECONDS:-30}
  local sfx=${NUDGE_SUFFIX} poll=1 timeout=${SECRET_TIMEOUT}
  [[ -z "${sfx}" ]] || poll=${NUDGE_POLL} timeout=${NUDGE_TIMEOUT}
  local row="reload${sfx}" row_env="reload-env${sfx}" row_sub="reload-subpath${sfx}"
  local ns_vol ns_env="" ns_sub="" replicas base_vol base_env="" base_sub=""
  kube_deploy volume-reload 1234 "${row}"
  ns_vol=${NS}
  replicas=$(kube_replicas)
  if [[ "${CONTROLS}" == true ]]; then
    kube_deploy env-reload 1234 "${row_env}"
    ns_env=${NS}
    kube_deploy subpath 1234 "${row_sub}"
    ns_sub=${NS}
  fi
  local ns
  for ns in ${ns_vol} ${ns_env} ${ns_sub}; do
    NS=${ns}
    [[ "${NUDGER}" != true ]] || kube_deploy_nudger
    wait_for "the pods of ${NS} to wait for a valid credential (RELOAD, not Ready)" "${KUBE_TIMEOUT}" 1 _kube_waiting ||
      die "the pods of ${NS} are not waiting for their credential"
  done
  NS=${ns_vol}
  base_vol=$(kube_uids)
  local -a witness
  mapfile -t witness < <(kube_pod_urls /test)
  kube_probe_start "${row}" /test "${witness[@]}"
  local t0_vol=${PROBE_T0} t0_env="" t0_sub=""
  if [[ "${CONTROLS}" == true ]]; then
    NS=${ns_env}
    base_env=$(kube_uids)
    kube_probe_start "${row_env}"
    t0_env=${PROBE_T0}
    NS=${ns_sub}
    base_sub=$(kube_uids)
    kube_probe_start "${row_sub}"
    t0_sub=${PROBE_T0}
  fi
  NS=${ns_vol}
  PROBE_POD="probe-${row}"
  kube_probe_wait_seconds 2 || true

  local t_fix t_fix_env="" t_fix_sub="" t_ready ready=true nudged_vol="" nudge_ms=0
  # What scripts/nudge.sh said of each control: nudged, cannot help, why (empty: not nudged).
  local n_env="" h_env="" w_env="" n_sub="" h_sub="" w_sub=""
  if [[ "${NUDGE}" == true ]]; then
    # The controls first: then nothing but the volume case's own patch and nudge runs
    # between its patch and its wait.
    log "the fix, nudged: the Secret becomes 4321 (kubectl patch secret), then scripts/nudge.sh; the controls first"
    if [[ "${CONTROLS}" == true ]]; then
      NS=${ns_env}
      _kube_fix_nudged 4321
      t_fix_env=${T_FIX} n_env=${NUDGED} h_env=${CANNOT_HELP} w_env=${CANNOT_HELP_WHY}
      NS=${ns_sub}
      _kube_fix_nudged 4321
      t_fix_sub=${T_FIX} n_sub=${NUDGED} h_sub=${CANNOT_HELP} w_sub=${CANNOT_HELP_WHY}
    fi
    NS=${ns_vol}
    _kube_fix_nudged 4321
    t_fix=${T_FIX} nudged_vol=${NUDGED} nudge_ms=$((T_NUDGED - T_FIX))
  else
    log "the fix: the Secret becomes 4321 (kubectl patch secret) in every namespace${sfx:+; the nudger in each}"
    t_fix=$(now_ms)
    t_fix_env=${t_fix} t_fix_sub=${t_fix}
    for ns in ${ns_vol} ${ns_env} ${ns_sub}; do
      NS=${ns}
      kube_secret_set 4321
    done
  fi
  NS=${ns_vol}
  wait_for "the kubelet to deliver the Secret${sfx:+ (nudged)} and the ${replicas} pods of ${NS} to become Ready" \
    "${timeout}" "${poll}" kube_all_ready "${replicas}" || ready=false
  t_ready=$(now_ms)
  if [[ "${NUDGER}" == true ]]; then
    kube_nudger_report 0
    nudged_vol=${NUDGED}
  fi

  local controls_ok=true
  if [[ "${CONTROLS}" == true ]]; then
    observe_for "a control pod becomes Ready" "${control_seconds}" 2 _kube_controls_ready "${ns_env}" "${ns_sub}" ||
      controls_ok=false
    if [[ "${NUDGER}" == true ]]; then
      NS=${ns_env} && kube_nudger_report 0 && n_env=${NUDGED} h_env=${CANNOT_HELP} w_env=${CANNOT_HELP_WHY}
      NS=${ns_sub} && kube_nudger_report 0 && n_sub=${NUDGED} h_sub=${CANNOT_HELP} w_sub=${CANNOT_HELP_WHY}
    fi
    kube_control_result "${row_env}" "${ns_env}" "${t0_env}" "${base_env}" "${t_fix_env}" "env var MYSECRET" \
      "${n_env}" "${h_env}" "${w_env}" || controls_ok=false
    kube_control_result "${row_sub}" "${ns_sub}" "${t0_sub}" "${base_sub}" "${t_fix_sub}" "subPath mount" \
      "${n_sub}" "${h_sub}" "${w_sub}" || controls_ok=false
  fi

  NS=${ns_vol}
  PROBE_POD="probe-${row}"
  kube_probe_wait_seconds 2 || true
  kube_probe_collect "${WORK_DIR}/probe.out"
  local failed total served kinds=- timeline seconds restarts uids verdict=ok note
  read -r failed total served kinds < <(probe_counts "${WORK_DIR}/probe.out")
  timeline=$(probe_timeline "${WORK_DIR}/probe.out" "${t0_vol}" "${t_fix}")
  seconds=$(fmt_secs $((t_ready - t_fix)))
  uids=$(kube_uids)
  restarts=$(kube_restarts "${base_vol}")
  if [[ "${NUDGE}" == true ]]; then
    note="waited (RELOAD, not Ready), Ready ${seconds}s after the patch, nudged (patch and nudge.sh done after $(fmt_secs "${nudge_ms}")s: ${nudged_vol} of ${replicas} pods nudged; then the kubelet's delivery, the file watch, the readiness probe), same pods: no restart"
  elif [[ "${NUDGER}" == true ]]; then
    note="waited (RELOAD, not Ready), Ready ${seconds}s after the patch, nudged by the nudger (${nudged_vol} of ${replicas} pods annotated; then the kubelet's delivery, the file watch, the readiness probe), same pods: no restart"
  else
    note="waited (RELOAD, not Ready), Ready ${seconds}s after the fix (the kubelet's sync; the file watch then wakes the start-up wait), same pods: no restart"
  fi
  if [[ "${ready}" != true ]]; then
    verdict=unexpected
    seconds=never
    note="the pods were not Ready ${timeout}s after the fix${sfx:+ and the nudge}"
  elif [[ "${uids}" != "${base_vol}" || "${restarts}" != 0 ]]; then
    verdict=unexpected
    note="the pods were replaced or restarted"
  elif [[ "${served}" != 1 ]]; then
    verdict=unexpected
    note="Ready, but no request through the Service's ClusterIP was ever answered"
  elif [[ -n "${sfx}" && "${nudged_vol}" != "${replicas}" ]]; then
    verdict=unexpected
    note="Ready ${seconds}s after the patch, but ${NUDGER_NAME} nudged ${nudged_vol} of its ${replicas} pods"
  elif [[ "${controls_ok}" != true ]]; then
    verdict=unexpected
    note="Ready ${seconds}s after the fix, but a negative control went wrong (see its CONTROL row)"
  elif ((failed > 0)); then
    kube_witness_collect "${WORK_DIR}/witness.out"
    verdict=unexpected
    note="${failed} of ${total} requests failed after the service had first answered: $(kinds_words "${kinds}")"
    ! network_verdict "${failed}" "${kinds}" "${WORK_DIR}/witness.out" ||
      verdict=ok-network note="Ready ${seconds}s after the fix, same pods, no restart; ${NETWORK_NOTE}"
  fi
  result "${row}" "${failed}" "${total}" "${seconds}" "${restarts}" "$(kube_names)" "${verdict}" "${timeline}" "${kinds}" "${note}"
  verdict_ok "${verdict}"
}

main() { scenario_main "$@"; }

main "$@"
