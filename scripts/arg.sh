#!/usr/bin/env bash
# arg.sh — scenario "arg": the article's fix, the credential on the command line.
#
# `--mysecret 4321` is accepted by the mock remote service: the process serves. The price
# is the exposure the article warns about: the value is in the process's argv (anyone who
# can run `ps` on the node sees it) and in the pod spec (anyone who can read the
# Deployment sees it).
#
#   local (default)  runs `hello-path-rs --mysecret 4321 --listen-addr 127.0.0.1:0`, reads
#                    the port from its log, probes /test for 2 s, shows /proc/PID/cmdline;
#                    expects every request answered and the value visible in argv
#   --kube           deploys k8s/overlays/arg into its own namespace, waits for the rollout,
#                    probes the Service from a pod, reads the container args from the
#                    Deployment; expects no failed request and the value in the pod spec
#
# Usage:
#   scripts/arg.sh [--kube [--context NAME]] [-h|--help]
#
# Ends with one line: RESULT scenario=arg mode=... (format: scripts/lib/probe.sh).
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
  app_start arg 0 -- --mysecret 4321
  local pid=${APP_PID} logf=${APP_LOG} port
  app_wait_ready "${pid}" "${logf}" 10 || true
  port=$(app_port "${logf}")
  local failed=0 total=0 served=0 kinds=- timeline=- cmdline="" exposed=false
  if [[ -n "${port}" ]]; then
    probe_start_local arg "${port}"
    probe_wait_seconds "${PROBE_OUT}" 2 || true
    probe_stop "${PROBE_PID}"
    read -r failed total served kinds < <(probe_counts "${PROBE_OUT}")
    timeline=$(probe_timeline "${PROBE_OUT}" "${PROBE_T0}")
  fi
  if [[ -r "/proc/${pid}/cmdline" ]]; then
    cmdline=$(tr '\0' ' ' <"/proc/${pid}/cmdline")
    cmdline=${cmdline% }
    log "the exposure: /proc/${pid}/cmdline (what ps shows) reads: ${cmdline}"
    [[ " ${cmdline} " == *" --mysecret 4321 "* ]] && exposed=true
  fi
  grep -F 'WARN' "${logf}" | sed 's/^/    /' || true
  app_stop "${pid}"

  local verdict=ok note="serves; the secret is in argv: /proc/${pid}/cmdline (ps) shows '--mysecret 4321'"
  if [[ "${served}" != 1 || "${failed}" != 0 ]]; then
    verdict=unexpected
    note="expected every request answered: ${failed} of ${total} failed"
  elif [[ "${exposed}" != true ]]; then
    verdict=unexpected
    note="the value was not found in /proc/${pid}/cmdline"
  fi
  result arg "${failed}" "${total}" - 0 "${pid}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

run_kube() {
  kube_deploy arg ""
  local rolled=true replicas
  kube_rollout_wait "${KUBE_TIMEOUT}" || rolled=false
  replicas=$(kube_replicas)
  kube_probe_start arg
  kube_probe_wait_seconds 3 || true
  kube_probe_collect "${WORK_DIR}/probe.out"

  local args exposed=false
  args=$(kube -n "${NS}" get deployment hello-path -o jsonpath='{.spec.template.spec.containers[0].args}')
  log "the exposure: kubectl get deployment hello-path -o jsonpath='{..args}' reads: ${args}"
  [[ "${args}" == *4321* ]] && exposed=true

  local failed total served kinds=- timeline restarts names verdict=ok
  read -r failed total served kinds < <(probe_counts "${WORK_DIR}/probe.out")
  timeline=$(probe_timeline "${WORK_DIR}/probe.out" "${PROBE_T0}")
  restarts=$(kube_restarts "$(kube_uids)")
  names=$(kube_names)
  local note="${replicas} pods serve; the secret is in the pod spec (kubectl get deployment -o yaml shows --mysecret 4321) and in ps on the node"
  if [[ "${rolled}" != true ]]; then
    verdict=unexpected
    note="the rollout did not finish within ${KUBE_TIMEOUT}s"
  elif [[ "${served}" != 1 || "${failed}" != 0 ]]; then
    verdict=unexpected
    note="expected every request answered: ${failed} of ${total} failed"
  elif [[ "${exposed}" != true ]]; then
    verdict=unexpected
    note="the value was not found in the container args"
  fi
  result arg "${failed}" "${total}" - "${restarts}" "${names}" "${verdict}" "${timeline}" "${kinds}" "${note}"
  [[ "${verdict}" == ok ]]
}

main() { scenario_main "$@"; }

main "$@"
