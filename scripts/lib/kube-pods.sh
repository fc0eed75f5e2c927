#!/usr/bin/env bash
# kube-pods.sh — what the --kube mode watches in a scenario's namespace NS: the app's pods
# (ready, restarted, replaced), rollouts, their logs, and the probe pod that measures
# availability through the Service. Sourced by kube.sh, whose kube / kube_t / kube_poll
# make every kubectl call.
#
#   kube_pods / kube_snapshot / kube_uids /    the app's pods now (each snapshot is kept,
#   kube_names / kube_restarts                 for the restarts count)
#   kube_all_ready / kube_any_ready /          conditions for wait_for
#   kube_crashed / kube_rollout_wait
#   kube_pod_logs / kube_pod_get               a pod's log; GET through the API server proxy
#   kube_probe_start / kube_probe_collect /    the probe pod (and its witness: the same probe
#   kube_witness_collect / kube_pod_urls /     asking each pod directly)
#   kube_probe_wait_seconds
# shellcheck shell=bash
# Variables set here are read by the scripts that source this file:
# shellcheck disable=SC2034

# What a missing image needs, said wherever a pod cannot get it.
readonly IMAGE_HINT="build and import it first: scripts/build-image.sh, then scripts/load-image.sh (kind, k3d, minikube, k3s; --registry REG to push instead)"

# kube_pods — the app's pods in NS that are not being deleted, one per line:
#   NAME UID READY RESTARTS WAITING_REASON     (READY True/False, "-" for no reason)
kube_pods() {
  kube_poll -n "${NS}" get pods -l "${APP_LABEL}" -o \
    jsonpath='{range .items[*]}{.metadata.name}{"|"}{.metadata.uid}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}{.status.containerStatuses[0].restartCount}{"|"}{.status.containerStatuses[0].state.waiting.reason}{"|"}{.metadata.deletionTimestamp}{"\n"}{end}' \
    2>/dev/null | awk -F'|' 'NF >= 5 && $6 == "" {
      printf "%s %s %s %s %s\n", $1, $2, ($3 == "" ? "False" : $3), ($4 == "" ? 0 : $4), ($5 == "" ? "-" : $5) }'
}

# kube_snapshot — prints kube_pods and records them (for the restarts count); on image
# errors, which no wait would outlast, the next wait round stops the script.
kube_snapshot() {
  local pods
  pods=$(kube_pods) || true
  printf '%s\n' "${pods}" >>"${WORK_DIR}/pods-${NS}.seen"
  if grep -qE 'ErrImagePull|ImagePullBackOff|ErrImageNeverPull|InvalidImageName' <<<"${pods}"; then
    fatal_later "the pods in ${NS} cannot get their image ${IMAGE:-${DEFAULT_IMAGE}}: $(awk '$5 ~ /Image/ { print $5; exit }' <<<"${pods}") (${IMAGE_HINT})"
  fi
  if grep -qE 'CreateContainerConfigError|CreateContainerError' <<<"${pods}"; then
    warn "pods in ${NS}: $(awk '$5 ~ /Create/ { print $1 ": " $5 }' <<<"${pods}" | head -n 1)"
  fi
  printf '%s\n' "${pods}"
}
# kube_uids — UIDs of the app's pods now (sorted, comma-separated).
kube_uids() { kube_snapshot | awk 'NF { print $2 }' | sort | paste -sd, -; }
kube_names() { kube_snapshot | awk 'NF { print $1 }' | sort | paste -sd, -; }
# kube_restarts BASELINE_UIDS — pods seen that are not in BASELINE, plus all container
# restarts seen (the highest count per pod).
kube_restarts() {
  local base=",$1,"
  awk -v base="${base}" 'NF >= 4 { if ($4 + 0 > max[$2]) max[$2] = $4 + 0; seen[$2] = 1 }
    END { n = 0; for (u in seen) { if (index(base, "," u ",") == 0) n++; n += max[u] } print n }' \
    "${WORK_DIR}/pods-${NS}.seen"
}
# kube_all_ready N — N app pods exist and every one is Ready.
kube_all_ready() {
  local want=$1 pods
  pods=$(kube_snapshot)
  awk -v want="${want}" 'NF { n++; if ($3 == "True") r++ } END { exit !(n == want && r == want) }' <<<"${pods}"
}
# kube_any_ready — at least one app pod is Ready.
kube_any_ready() { kube_snapshot | awk '$3 == "True" { f = 1 } END { exit !f }'; }
# kube_crashed — an app pod has crashed at least once (restarts or CrashLoopBackOff/Error).
kube_crashed() { kube_snapshot | awk '$4 + 0 >= 1 || $5 == "CrashLoopBackOff" { f = 1 } END { exit !f }'; }
# kube_replicas — spec.replicas of the Deployment.
kube_replicas() { kube -n "${NS}" get deployment hello-path -o jsonpath='{.spec.replicas}'; }

# kube_rollout_wait TIMEOUT_S — `kubectl rollout status --timeout`, in 3 s slices so that
# the elapsed time is printed while it waits.
_rollout_done() {
  kube_snapshot >/dev/null
  kube_t 5 -n "${NS}" rollout status deployment/hello-path --timeout=3s >/dev/null 2>&1
}
kube_rollout_wait() {
  wait_for "deployment/hello-path in ${NS} to finish its rollout" "$1" 0.2 _rollout_done
}

# kube_pod_logs POD — the pod's log, the previous container's first when it restarted.
kube_pod_logs() {
  kube -n "${NS}" logs "$1" --previous 2>/dev/null || kube -n "${NS}" logs "$1" 2>/dev/null || true
}

# kube_pod_urls PATH — http://POD_IP:8080PATH for each app pod, one per line: what a
#   witness asks (kube_probe_start).
kube_pod_urls() {
  local ip
  for ip in $(kube_poll -n "${NS}" get pods -l "${APP_LABEL}" -o jsonpath='{.items[*].status.podIP}' 2>/dev/null); do
    [[ "${ip}" != *:* ]] || ip="[${ip}]"
    printf 'http://%s:8080%s\n' "${ip}" "$1"
  done
}

# _probe_container NAME URL... — a container of the probe pod asking URL... in turn.
_probe_container() {
  local name=$1 args="" u
  shift
  for u in "$@"; do args+="\"${u}\", "; done
  cat <<EOF
    - name: ${name}
      image: ${IMAGE:-${DEFAULT_IMAGE}}
      imagePullPolicy: IfNotPresent
      args: ["probe", ${args}"--for", "900s", "--every", "50ms", "--timeout", "1s"]
      resources:
        requests: {cpu: 10m, memory: 8Mi}
        limits: {memory: 32Mi}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: ["ALL"]
EOF
}

# kube_probe_start NAME [PATH [WITNESS_URL...]] — a Pod from the same image that runs
#   `hello-path-rs probe` against the Service's ClusterIP (no DNS needed); with WITNESS_URLs
#   (kube_pod_urls), a second container, the witness, asks the pods directly at the same
#   pace, so that a failure the pods never saw can be told from one of theirs
#   (network_verdict). Sets PROBE_POD and PROBE_T0 (ms, when its first second was
#   reported, minus 1 s).
kube_probe_start() {
  local name=$1 path=${2:-/test} ip
  shift $(($# < 2 ? $# : 2))
  ip=$(kube -n "${NS}" get svc hello-path -o jsonpath='{.spec.clusterIP}') ||
    die "cannot read the ClusterIP of service hello-path in ${NS}"
  [[ -n "${ip}" ]] || die "service hello-path in ${NS} has no ClusterIP"
  PROBE_POD="probe-${name}"
  {
    cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: ${PROBE_POD}
  labels:
    app.kubernetes.io/name: hello-path-probe
    app.kubernetes.io/part-of: hello-path-rs
  annotations:
    seccomp.security.alpha.kubernetes.io/pod: runtime/default
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile:
      type: RuntimeDefault
  containers:
EOF
    _probe_container probe "http://${ip}:80${path}"
    (($# == 0)) || _probe_container witness "$@"
  } >"${WORK_DIR}/${PROBE_POD}-${NS}.yaml"
  kube apply "${APPLY_FLAGS[@]}" -n "${NS}" -f "${WORK_DIR}/${PROBE_POD}-${NS}.yaml" >/dev/null ||
    die "cannot create the probe pod ${PROBE_POD} in ${NS}"
  log "probe pod ${NS}/${PROBE_POD}: GET http://${ip}:80${path} (ClusterIP) every 50ms${1:+; its witness: $*}"
  wait_for "probe pod ${PROBE_POD} to report its first second" 120 0.5 _probe_pod_started ||
    die "the probe pod ${NS}/${PROBE_POD} did not start: $(kube -n "${NS}" get pod "${PROBE_POD}" -o jsonpath='{.status.containerStatuses[0].state}' 2>/dev/null)"
  PROBE_T0=$(($(now_ms) - 1000))
}
_probe_pod_started() {
  local st
  st=$(kube_poll -n "${NS}" get pod "${PROBE_POD}" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)
  case "${st}" in
    ErrImagePull | ImagePullBackOff | ErrImageNeverPull | InvalidImageName)
      fatal_later "probe pod ${NS}/${PROBE_POD}: ${st}: image ${IMAGE:-${DEFAULT_IMAGE}} is not in the cluster (${IMAGE_HINT})"
      ;;
  esac
  kube_poll -n "${NS}" logs "${PROBE_POD}" -c probe 2>/dev/null | has_re '^probe second='
}
# kube_probe_collect FILE / kube_witness_collect FILE — the per-second lines so far of the
#   probe pod's probe (through the Service) / of its witness (each pod directly).
kube_probe_collect() {
  kube_poll -n "${NS}" logs "${PROBE_POD}" -c probe >"$1" 2>/dev/null ||
    warn "cannot read the log of probe pod ${NS}/${PROBE_POD}"
}
kube_witness_collect() {
  kube_poll -n "${NS}" logs "${PROBE_POD}" -c witness >"$1" 2>/dev/null ||
    warn "cannot read the log of the witness in probe pod ${NS}/${PROBE_POD}"
}
# kube_probe_wait_seconds N — bounded wait until the probe pod has reported N more seconds.
kube_probe_wait_seconds() {
  local n=$1 have f="${WORK_DIR}/probe-wait.out"
  kube_probe_collect "${f}"
  have=$(probe_seconds "${f}")
  wait_for "the probe to report ${n} more second(s)" $((n + 30)) 0.5 _kube_probe_has $((have + n))
}
_kube_probe_has() {
  local f="${WORK_DIR}/probe-wait.out"
  kube_probe_collect "${f}"
  (($(probe_seconds "${f}") >= $1))
}

# kube_pod_get POD PATH — GET http://POD:8080/PATH through the API server's pod proxy (no
# curl in a scratch image; works on old clusters too). Bounded: it runs inside wait loops.
kube_pod_get() {
  kube_poll get --raw "/api/v1/namespaces/${NS}/pods/$1:8080/proxy$2" 2>/dev/null
}
