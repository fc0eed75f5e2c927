#!/usr/bin/env bash
# tests/nudger.sh — hello-path-nudger end to end without a cluster: the real binary against
# the fake API server (tests/lib/fake_apiserver.py) over TLS, with certificates made for the
# run by openssl, serving the recorded pods of tests/nudge.sh (tests/fixtures/nudge) plus the
# workloads of tests/fixtures/nudger, enforcing the Role of tests/fixtures/nudger/role.json.
#
#   1. --help, --version, bad arguments (exit 2, one line and the hint), bad kubeconfigs
#      (one line naming file and field; exit 2 for what the command line named wrongly);
#   2. shop (a kubeconfig tokenFile): Ready after the first lists, no PATCH on them nor on a
#      metadata-only change; a change of data annotates exactly the pods nudge.sh nudges
#      over the same recorded pods (tests/fixtures/nudge/shop.out), leaves the one up to
#      date alone, reports every pod it cannot help with nudge.sh's cure; the metrics
#      (promtool check metrics when installed); ConfigMaps; opt-out; a Secret created after
#      the list; a pod deleted between list and patch; a restart changes nothing; SIGTERM
#      and SIGINT exit 0 at once;
#   3. the watch: bookmarks (the next watch starts from theirs), a dropped watch, an ERROR
#      410 event and a 410 answer (relist; a change made meanwhile is nudged), a malformed
#      event (skipped), RBAC refusals (log and /readyz name the verb and the resource, Ready
#      again once allowed), the API server down and back;
#   4. credentials: a rotated token (the file swapped as the kubelet does; a token changed
#      in place is re-read after a 401), an exec plugin, insecure-skip-tls-verify, client
#      certificates (EC, RSA), the in-cluster ServiceAccount; --all-namespaces (refused by a Role, allowed by a ClusterRole),
#      several --namespace;
#   5. --restart-unreloadable with two replicas at once: each workload restarted once, as
#      `kubectl rollout restart` does; --dry-run patches nothing.
#
# Usage: tests/nudger.sh [-h|--help]
# Prints `ok - ...` / `not ok - ...` lines and ends with `N passed, M failed`.
# Needs python3, openssl, curl; runs promtool when installed.
# Environment: NUDGER_BIN, the binary to test [target/debug/hello-path-nudger, built by
# `cargo build -p hello-path-nudger`].
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly BIN=${NUDGER_BIN:-${ROOT}/target/debug/hello-path-nudger}
readonly FAKE="${ROOT}/tests/lib/fake_apiserver.py"
readonly PREFIX=secret.nudge.hello-path-rs
# The pods of namespace shop that nudge.sh nudges for app-secret (tests/nudge.sh).
readonly SHOP_VOLUME_PODS=(api-0 gateway-9c8b7d6f5-h4j6k mixed-6f8d9c7b5-t6y2u node-agent-x7p2q
  web-6d8f7c9b54-2xkqp web-6d8f7c9b54-7hn4t worker-5c7b9d8f6-k2m9x)
readonly SHOP_UP_TO_DATE=web-6d8f7c9b54-r5wzm
# The resourceVersion the first change of app-secret gets: the up-to-date pod has it already
# (its recorded annotation, 48213 in the recording, is rewritten to it in the fixtures).
readonly CHANGE_RV=90000
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"

WORK="" CERTS="" FIXTURES="" CASE="" SERVER_PID="" PORT=""
declare -A PIDS=() ADDRS=()
RC=0

usage() { sed -n '2,/^set -o/{/^set -o/d;s/^# \{0,1\}//;p}' "$0"; }

cleanup() {
  local name
  for name in "${!PIDS[@]}"; do kill -KILL "${PIDS[${name}]}" 2>/dev/null || true; done
  server_stop
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then rm -rf -- "${WORK}"; fi
}

# wait_for WHAT COMMAND... — COMMAND succeeds within 20 s (polled every 50 ms); else says
# what it waited for, under the current check.
wait_for() {
  local what=$1 i
  shift
  for ((i = 0; i < 400; i++)); do
    if "$@"; then return 0; fi
    sleep 0.05
  done
  note "gave up after 20 s waiting for ${what}"
  return 1
}

# fixtures — the recorded objects of tests/nudge.sh and the workloads of this test, with the
# up-to-date pod annotated with CHANGE_RV.
make_fixtures() {
  FIXTURES="${WORK}/fixtures"
  mkdir -p "${FIXTURES}"
  cp "${ROOT}"/tests/fixtures/nudge/{secrets,configmaps,replicasets}.json "${FIXTURES}/"
  cp "${ROOT}"/tests/fixtures/nudger/{deployments,statefulsets}.json "${FIXTURES}/"
  sed "s|\"${PREFIX}/app-secret\": \"48213\"|\"${PREFIX}/app-secret\": \"${CHANGE_RV}\"|" \
    "${ROOT}/tests/fixtures/nudge/pods.json" >"${FIXTURES}/pods.json"
  grep -q "\"${PREFIX}/app-secret\": \"${CHANGE_RV}\"" "${FIXTURES}/pods.json"
}

# server_start NAME [FAKE-ARG...] — a fresh fake API server (TLS, tokens, the Role) for case
# NAME: sets CASE and PORT. `--port N` among the arguments brings it back on that port.
server_start() {
  server_stop
  CASE="${WORK}/$1"
  shift
  mkdir -p "${CASE}"
  rm -f "${CASE}/port" "${CASE}/cport"
  python3 "${FAKE}" serve --fixtures "${FIXTURES}" --port-file "${CASE}/port" \
    --control-port-file "${CASE}/cport" --log "${CASE}/log" --tls-dir "${CERTS}" \
    --tokens "${WORK}/tokens" --role "${ROOT}/tests/fixtures/nudger/role.json" "$@" \
    >>"${CASE}/server.err" 2>&1 &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ ! -s "${CASE}/port" ]] || break
    sleep 0.1
  done
  [[ -s "${CASE}/port" ]] || { cat "${CASE}/server.err" >&2; printf 'tests/nudger.sh: the fake API server did not start\n' >&2; exit 1; }
  PORT=$(cat "${CASE}/port")
  touch "${CASE}/log"
}
server_stop() {
  if [[ -n "${SERVER_PID}" ]]; then
    kill "${SERVER_PID}" 2>/dev/null || true
    wait "${SERVER_PID}" 2>/dev/null || true
    SERVER_PID=""
  fi
}
ctl() { python3 "${FAKE}" ctl "${CASE}/cport" "$@"; }

# kubeconfig FILE USER-YAML — a kubeconfig for the fake server (CA by file), context shop.
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: "https://127.0.0.1:${PORT}"
    certificate-authority: ${CERTS}/ca.crt
users:
- name: me
  user: $2
contexts:
- name: fake
  context: {cluster: fake, user: me, namespace: shop}
current-context: fake
EOF
}

# secret_dir_swap DIR FILE VALUE — writes FILE=VALUE into DIR as the kubelet updates a
# projected volume: a new timestamped directory, `..data_tmp` renamed over `..data`.
secret_dir_swap() {
  local dir=$1 file=$2 value=$3 stamp
  stamp="..$(date +%Y_%m_%d_%H_%M_%S.%N)"
  mkdir "${dir}/${stamp}"
  printf '%s' "${value}" >"${dir}/${stamp}/${file}"
  ln -sfn "${stamp}" "${dir}/..data_tmp"
  mv -T "${dir}/..data_tmp" "${dir}/..data"
  [[ -L "${dir}/${file}" ]] || ln -s "..data/${file}" "${dir}/${file}"
}

# nudger NAME ARG... — starts the binary (listening on a free port); waits for its first
# log line, which names the port. Its log: CASE/NAME.log.
nudger() {
  local name=$1 i
  shift
  "${BIN}" --listen-addr 127.0.0.1:0 "$@" >"${CASE}/${name}.log" 2>&1 &
  PIDS[${name}]=$!
  ADDRS[${name}]=""
  for ((i = 0; i < 200; i++)); do
    ADDRS[${name}]=$(grep -o '/readyz on 127\.0\.0\.1:[0-9]*' "${CASE}/${name}.log" | head -n 1 | cut -d' ' -f3) || true
    [[ -z "${ADDRS[${name}]}" ]] || return 0
    kill -0 "${PIDS[${name}]}" 2>/dev/null || break
    sleep 0.05
  done
  note "nudger ${name} did not start:"
  sed 's/^/#   /' "${CASE}/${name}.log"
  return 1
}
# stop NAME [SIGNAL] — signals it, waits at most 5 s; sets RC to its exit status.
stop() {
  local name=$1 sig=${2:-TERM} pid=${PIDS[$1]} i
  kill -"${sig}" "${pid}" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "${pid}" 2>/dev/null || true
  RC=0
  wait "${pid}" 2>/dev/null || RC=$?
  unset "PIDS[${name}]"
}
# run_nudger ARG... — runs the binary to its end (at most 10 s): RC, CASE/run.out, run.err.
run_nudger() {
  RC=0
  timeout 10 "${BIN}" "$@" >"${CASE}/run.out" 2>"${CASE}/run.err" || RC=$?
}

get() { curl -s --max-time 5 "http://${ADDRS[$1]}$2"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://${ADDRS[$1]}$2"; }
ready() { [[ "$(code "$1" /readyz)" == 200 ]]; }
not_ready_with() { [[ "$(code "$1" /readyz)" == 503 ]] && get "$1" /readyz | grep -qF -- "$2"; }
metric() { get "$1" /metrics | grep -qxF -- "$2"; }
logged() { grep -qF -- "$2" "${CASE}/$1.log"; }
log_count() { grep -cF -- "$2" "${CASE}/$1.log" || true; }
# patches — "POD BODY" of every PATCH of a pod the server applied, sorted.
patches() { awk '$1 == "patch" && $2 == "pods" && $5 == 200 { print $4, $7 }' "${CASE}/log" | sort; }
patch_count() { [[ "$(patches | grep -c .)" -eq "$1" ]]; }
# want_patched KEY VALUE POD... — exactly these pods were annotated KEY=VALUE.
want_patched() {
  local key=$1 value=$2 pod want
  shift 2
  want=$(for pod in "$@"; do
    printf '%s {"metadata":{"annotations":{"%s":"%s"}}}\n' "${pod}" "${key}" "${value}"
  done | sort)
  [[ "$(patches | grep -F "\"${key}\":\"${value}\"")" == "${want}" ]]
}
# watches N RESOURCE — the server saw N watches of RESOURCE started.
watches() { [[ "$(awk -v r="$2" '$1 == "watch" && $2 == r && $5 == 200' "${CASE}/log" | grep -c .)" -ge "$1" ]]; }
# show NAME — the nudger's log under a failed check.
show() { sed 's/^/#   /' "${CASE}/$1.log" | tail -n 30; }
# check WHAT COMMAND... — tap.sh's check, with the last nudger's log under a failure.
check() {
  local what=$1
  shift
  if "$@"; then ok "${what}"; else not_ok "${what}"; [[ -z "${LAST:-}" ]] || show "${LAST}"; fi
}
LAST=""

rc_is() { [[ "${RC}" == "$1" ]]; }
err_is() { [[ "$(cat "${CASE}/run.err")" == "$1" ]]; }
err_lines() { [[ "$(wc -l <"${CASE}/run.err")" == "$1" ]]; }
err_has() { grep -qF -- "$1" "${CASE}/run.err"; }
out_has() { grep -qE -- "$1" "${CASE}/run.out"; }
out_is() { [[ "$(cat "${CASE}/run.out")" == "$1" ]]; }
# asked REGEX — a request in the server's log matches; not_asked: none does.
asked() { grep -qE -- "$1" "${CASE}/log"; }
not_asked() { ! grep -qE -- "$1" "${CASE}/log"; }
# asked_n N REGEX — exactly N requests match; asked_least N REGEX: at least N.
asked_n() { [[ "$(grep -cE -- "$2" "${CASE}/log" || true)" == "$1" ]]; }
asked_least() { [[ "$(grep -cE -- "$2" "${CASE}/log" || true)" -ge "$1" ]]; }
not_logged() { ! grep -qE -- "$2" "${CASE}/$1.log"; }
# logged_least NAME N REGEX — at least N lines of NAME's log match REGEX.
logged_least() { [[ "$(grep -cE -- "$3" "${CASE}/$1.log" || true)" -ge "$2" ]]; }
no_patch_of() { ! patches | grep -qF -- "$1"; }
open_watches() { [[ "$(ctl watches)" == "$1" ]]; }

running_pod() {
  # running_pod NAME VOLUME-JSON [ANNOTATIONS-JSON] — a Running pod of namespace shop that
  # mounts VOLUME-JSON (a volume named v) in container app.
  printf '{"metadata":{"name":"%s","annotations":%s},"spec":{"volumes":[%s],"containers":[{"name":"app","volumeMounts":[{"name":"v","mountPath":"/etc/x"}]}]},"status":{"phase":"Running"}}' \
    "$1" "${3:-{\}}" "$2"
}

test_static() {
  CASE="${WORK}/static"
  mkdir -p "${CASE}"
  run_nudger --help
  check "--help: exit 0, the usage, the annotations and the exit codes" \
    all rc_is 0 -- out_has '^USAGE:' -- out_has 'nudge\.hello-path-rs/ignore' -- out_has '^EXIT STATUS'
  run_nudger --version
  check "--version: hello-path-nudger 0.1.0" all rc_is 0 -- out_is "hello-path-nudger 0.1.0"
  local args
  for args in "--bogus" "--namespace" "--namespace Shop_1" "--all-namespaces --namespace shop" \
    "--dry-run=maybe" "--listen-addr nowhere" "extra"; do
    # shellcheck disable=SC2086 # one string of arguments, split on purpose
    run_nudger ${args}
    check "bad arguments '${args}': exit 2, one error line and the hint" \
      all rc_is 2 -- err_lines 2 -- err_has "hello-path-nudger: error: " -- err_has "Try 'hello-path-nudger --help'"
  done
  local kc="${CASE}/kubeconfig"
  run_nudger --kubeconfig "${CASE}/missing"
  check "--kubeconfig of a missing file: exit 2, one line naming it" \
    all rc_is 2 -- err_is "hello-path-nudger: error: cannot read kubeconfig ${CASE}/missing: no such file or directory"
  kubeconfig "${kc}" '{token: abc}'
  run_nudger --kubeconfig "${kc}" --context nope
  check "--context nope: exit 2, one line naming the file and the contexts in it" \
    all rc_is 2 -- err_is "hello-path-nudger: error: kubeconfig ${kc}: context 'nope' not found (contexts: fake)"
  printf 'clusters: [\n' >"${kc}"
  run_nudger --kubeconfig "${kc}"
  check "a kubeconfig that is not YAML: exit 1, one line naming the file" \
    all rc_is 1 -- err_lines 1 -- err_has "hello-path-nudger: error: kubeconfig ${kc}: invalid YAML"
  kubeconfig "${kc}" '{client-certificate-data: bm90IGEgY2VydA==, client-key-data: "%%"}'
  run_nudger --kubeconfig "${kc}"
  check "a client-key-data that is not base64: exit 1, the field named" \
    all rc_is 1 -- err_is "hello-path-nudger: error: kubeconfig ${kc}: users[me].user.client-key-data is not base64"
  kubeconfig "${kc}" '{client-certificate-data: bm90IGEgY2VydA==, client-key-data: bm90IGEga2V5}'
  run_nudger --kubeconfig "${kc}"
  check "a client certificate that is not PEM: exit 1, one line naming the field" \
    all rc_is 1 -- err_lines 1 -- err_has "users[me].user.client-certificate-data: no PEM certificate in it"
  sed -i '/server:/d' "${kc}"
  run_nudger --kubeconfig "${kc}"
  check "a cluster without server: exit 1, one line naming the field" \
    all rc_is 1 -- err_lines 1 -- err_has "clusters[fake].cluster.server is missing"
}

# cannot_help_as_nudge_sh NAME RV — every cannot-help line of shop.out (pod, why, cure) is
# in the nudger's log for that change; sets MISSING to the pods that are not.
MISSING=""
cannot_help_as_nudge_sh() {
  local line pod why cure
  MISSING=""
  while IFS= read -r line; do
    pod=${line#cannot-help pod/}
    pod=${pod%%:*}
    why=${line#*: }
    why=${why%%; cure: *}
    cure=${line##*; cure: }
    grep -F -- "cannot-help Secret shop/app-secret (resourceVersion $2): " "${CASE}/$1.log" |
      grep -F -- "${why}; cure: ${cure}" | grep -qE -- "(\(pod ${pod}\)|pod/${pod}): " ||
      MISSING+=" ${pod}"
  done < <(grep '^cannot-help ' "${ROOT}/tests/fixtures/nudge/shop.out")
  [[ -z "${MISSING}" ]]
}

# scenarios_read NAME SECRET NUDGED CANNOT_HELP — what `reload.sh --nudger` and `rotate.sh
# --nudger` make of nudger NAME's log (scripts/lib/kube.sh, in a subshell of its own): the
# counts they compare with the replicas, and one reason at least.
scenarios_read() {
  local got
  # shellcheck source=scripts/lib/common.sh disable=SC1091
  got=$(source "${ROOT}/scripts/lib/common.sh" && source "${ROOT}/scripts/lib/kube.sh" &&
    nudger_said "${CASE}/$1.log" "$2" && printf '%s %s %s' "${NUDGED}" "${CANNOT_HELP}" "${CANNOT_HELP_WHY:+why}")
  [[ "${got}" == "$3 $4 why" ]] || { note "nudger_said: ${got:-nothing}"; return 1; }
}

test_shop() {
  server_start shop
  printf 'tok-1' >"${WORK}/token-1"
  kubeconfig "${CASE}/kubeconfig" "{tokenFile: ${WORK}/token-1}"
  nudger a --kubeconfig "${CASE}/kubeconfig"
  LAST=a
  check "shop: Ready once secrets, configmaps and pods are listed" wait_for "/readyz 200" ready a
  check "shop: the first lists nudge nothing" patch_count 0
  check "shop: it lists, then watches from the list's resourceVersion with a timeoutSeconds of 5-10 min" \
    all asked '^list pods shop - 200 ' -- wait_for "the watch of secrets" watches 1 secrets -- \
    asked '^watch secrets shop rv=70001 200 ([3-5][0-9]{2}|600)s '
  ctl bump secrets shop app-secret >/dev/null
  ctl set-data secrets shop other-secret '{"data":{"k":"b3RoZXI="}}' >/dev/null
  check "a metadata-only change of app-secret nudges nothing (a later change of other-secret is nudged)" \
    all wait_for "the patch of other-7c9d8f6b5-z9x8w" asked '^patch pods shop other-7c9d8f6b5-z9x8w 200' -- \
    no_patch_of app-secret

  ctl set-data secrets shop app-secret '{"data":{"password":"bmV3"}}' "${CHANGE_RV}" >/dev/null
  check "a change of data: the 7 pods nudge.sh nudges are annotated ${PREFIX}/app-secret=${CHANGE_RV}" \
    wait_for "7 patches of app-secret" want_patched "${PREFIX}/app-secret" "${CHANGE_RV}" "${SHOP_VOLUME_PODS[@]}"
  wait_for "the summary line" logged a "Secret shop/app-secret changed (resourceVersion ${CHANGE_RV}): nudged 7 pod(s)" || true
  check "  ... ${SHOP_UP_TO_DATE}, which has it already, is left alone" \
    not_asked "^patch pods shop ${SHOP_UP_TO_DATE} "
  check "  ... every pod nudge.sh cannot help is reported with its cure, one line per owner (shop.out)" \
    cannot_help_as_nudge_sh a "${CHANGE_RV}"
  [[ -z "${MISSING}" ]] || note "not reported as nudge.sh does:${MISSING}"
  check "  ... and the scenarios read it so from its log (nudger_said of scripts/lib/kube.sh): 7 nudged, 10 cannot help" \
    scenarios_read a app-secret 7 10
  check "  ... nothing is restarted without --restart-unreloadable" \
    not_asked '^patch (deployments|statefulsets|daemonsets) '
  get a /metrics | grep -E '^hello_path_nudger_(nudges_total.kind="secret"|cannot_help|event_to_patch_seconds_count)' >"${CASE}/m.txt" || true
  check "metrics: 8 patched (app-secret's 7, other-secret's 1), 1 unchanged, 12 cannot help (10 and 2), 2 event-to-patch observations" \
    all metric a 'hello_path_nudger_nudges_total{kind="secret",result="patched"} 8' -- \
    metric a 'hello_path_nudger_nudges_total{kind="secret",result="unchanged"} 1' -- \
    metric a 'hello_path_nudger_cannot_help_total{kind="secret"} 12' -- \
    metric a 'hello_path_nudger_event_to_patch_seconds_count 2' -- metric a 'hello_path_nudger_ready 1' ||
    sed 's/^/#   /' "${CASE}/m.txt"
  get a /metrics >"${CASE}/metrics.txt"
  if command -v promtool >/dev/null 2>&1; then
    check "promtool check metrics: clean" promtool check metrics <"${CASE}/metrics.txt"
  else
    not_ok "promtool check metrics (promtool is not installed: scripts/test.sh --prepare installs it)"
  fi
  check "metrics: process_start_time_seconds; /healthz 200" \
    all grep -q '^process_start_time_seconds [0-9]' "${CASE}/metrics.txt" -- same "$(code a /healthz)" 200
  check "no Secret value in the log" not_logged a 'bmV3|b3RoZXI='

  # ConfigMaps, opt-out, a Secret created after the list: through pods the watch adds.
  ctl create pods shop "$(running_pod cm-reader '{"name":"v","configMap":{"name":"app-config"}}')" >/dev/null
  ctl create pods shop "$(running_pod opted-out '{"name":"v","secret":{"secretName":"app-secret"}}' '{"nudge.hello-path-rs/ignore":"true"}')" >/dev/null
  ctl create pods shop "$(running_pod late-reader '{"name":"v","secret":{"secretName":"late-secret","optional":true}}')" >/dev/null
  wait_for "the new pods in the cache" metric a 'hello_path_nudger_cached_objects{resource="pods"} 30' || true
  local cm_rv rv late_rv
  cm_rv=$(ctl set-data configmaps shop app-config '{"data":{"a":"2"}}')
  # The running pods that mount it: cm-reader and those of the recording (as nudge.sh nudges
  # them in tests/fixtures/nudge/shop-configmap.out, the one up to date there included).
  check "a ConfigMap's change: its pods annotated configmap.nudge.hello-path-rs/app-config=${cm_rv}" \
    wait_for "the patches of app-config's pods" want_patched configmap.nudge.hello-path-rs/app-config "${cm_rv}" \
    cm-reader jobs-0 site-7b8c9d6f5-a1b2c site-7b8c9d6f5-d3e4f
  rv=$(ctl set-data secrets shop app-secret '{"data":{"password":"bmV3ZXI="}}')
  check "the next change of app-secret: the 8 pods, not the one annotated nudge.hello-path-rs/ignore" \
    wait_for "8 patches" want_patched "${PREFIX}/app-secret" "${rv}" "${SHOP_VOLUME_PODS[@]}" "${SHOP_UP_TO_DATE}"
  late_rv=$(ctl create secrets shop '{"metadata":{"name":"late-secret"},"data":{"k":"dg=="}}')
  check "a Secret created after the list: the pod waiting for it (an optional volume) is nudged" \
    wait_for "the patch of late-reader" want_patched "${PREFIX}/late-secret" "${late_rv}" late-reader

  # A restart: the first list nudges nothing, so nothing up to date is touched.
  stop a TERM
  check "SIGTERM: exit 0 within 5 s (got ${RC})" test "${RC}" = 0
  local before
  before=$(grep -c '^patch ' "${CASE}/log")
  nudger b --kubeconfig "${CASE}/kubeconfig"
  LAST=b
  check "a second run: Ready, and it patches nothing" \
    all wait_for "/readyz 200" ready b -- asked_n "${before}" '^patch '
  stop b INT
  check "SIGINT: exit 0 (got ${RC})" test "${RC}" = 0
}

test_vanished() {
  server_start vanish --vanish pods:web-6d8f7c9b54-2xkqp
  kubeconfig "${CASE}/kubeconfig" "{tokenFile: ${WORK}/token-1}"
  nudger v --kubeconfig "${CASE}/kubeconfig"
  LAST=v
  wait_for "/readyz 200" ready v || true
  ctl set-data secrets shop app-secret '{"data":{"x":"eQ=="}}' >/dev/null
  check "a pod deleted between the list and the patch: 'gone', counted, not an error; the others nudged" \
    all wait_for "the gone line" logged v 'gone pod/web-6d8f7c9b54-2xkqp in namespace shop: deleted since it was listed' -- \
    wait_for "the gone metric" metric v 'hello_path_nudger_nudges_total{kind="secret",result="gone"} 1' -- \
    metric v 'hello_path_nudger_nudges_total{kind="secret",result="failed"} 0' -- not_logged v WARN -- patch_count 7
  stop v
}

test_watch() {
  server_start watch
  kubeconfig "${CASE}/kubeconfig" "{tokenFile: ${WORK}/token-1}"
  nudger w --kubeconfig "${CASE}/kubeconfig"
  LAST=w
  wait_for "/readyz 200" ready w || true
  wait_for "the watch of pods" watches 1 pods || true
  local rv
  # A change of another resource moves the version on; only a bookmark tells the pods'
  # watch, which then watches again from there rather than from its list.
  rv=$(ctl bump secrets shop other-secret)
  ctl bookmark >/dev/null
  ctl drop >/dev/null
  check "a dropped watch is watched again from its last bookmark's resourceVersion (${rv})" \
    wait_for "a watch of pods from rv=${rv}" asked "^watch pods shop rv=${rv} 200 "
  check "  ... logged, counted (reason dropped), no relist" \
    all logged w 'watch of pods in namespace shop dropped' -- asked_n 1 '^list pods ' -- \
    metric w 'hello_path_nudger_watch_restarts_total{resource="pods",reason="dropped"} 1'
  rv=$(ctl set-data secrets shop app-secret '{"data":{"a":"MQ=="}}')
  check "  ... and the next change is nudged" \
    wait_for "8 patches" want_patched "${PREFIX}/app-secret" "${rv}" "${SHOP_VOLUME_PODS[@]}" "${SHOP_UP_TO_DATE}"

  ctl expire >/dev/null
  check "an ERROR event with code 410: listed again" \
    wait_for "a second list of secrets" asked_least 2 '^list secrets shop '
  check "  ... logged and counted (reason expired)" \
    all logged w 'watch of secrets in namespace shop expired' -- \
    metric w 'hello_path_nudger_watch_restarts_total{resource="secrets",reason="expired"} 1'

  # A change the watch cannot see (refused), then a 410 answer: the relist finds it.
  ctl deny watch:secrets >/dev/null
  ctl drop >/dev/null
  check "a refused watch: /readyz 503 naming the verb, the resource and the RBAC rule" \
    wait_for "/readyz 503" not_ready_with w "forbidden: cannot watch secrets in namespace shop (RBAC: add list,watch on secrets)"
  check "  ... and the log says the same" \
    logged w "forbidden: cannot watch secrets in namespace shop (RBAC: add list,watch on secrets); trying again in"
  rv=$(ctl set-data secrets shop app-secret '{"data":{"a":"Mg=="}}')
  ctl compact-status >/dev/null
  ctl deny >/dev/null
  check "allowed again, the watch answered 410: listed again, and the change made meanwhile nudged" \
    wait_for "8 patches with ${rv}" want_patched "${PREFIX}/app-secret" "${rv}" "${SHOP_VOLUME_PODS[@]}" "${SHOP_UP_TO_DATE}"
  check "  ... it says the Secret changed while the watch was down" \
    logged w "Secret shop/app-secret changed while the watch was down (resourceVersion ${rv})"
  check "  ... Ready again" wait_for "/readyz 200" ready w

  wait_for "3 open watches" open_watches 3 || true
  ctl malformed >/dev/null
  check "a malformed event is logged and skipped (never its content)" \
    wait_for "the skip lines" logged_least w 6 'skipped a malformed event on the watch of'
  check "  ... counted as decode errors" metric w 'hello_path_nudger_api_errors_total{code="decode"} 6'
  rv=$(ctl set-data secrets shop app-secret '{"data":{"a":"Mw=="}}')
  check "  ... and the watch goes on: the next change is nudged" \
    wait_for "8 patches with ${rv}" want_patched "${PREFIX}/app-secret" "${rv}" "${SHOP_VOLUME_PODS[@]}" "${SHOP_UP_TO_DATE}"

  # The API server down, then back on the same port.
  local port=${PORT}
  kill -KILL "${SERVER_PID}"
  wait "${SERVER_PID}" 2>/dev/null || true
  SERVER_PID=""
  check "the API server down: /readyz 503 saying it cannot be reached; the process lives on" \
    wait_for "/readyz 503" not_ready_with w "connection refused"
  server_start watch --port "${port}" --first-version 80000
  check "  ... back: Ready again" wait_for "/readyz 200" ready w
  rv=$(ctl set-data secrets shop app-secret '{"data":{"a":"NA=="}}')
  check "  ... and a change is nudged" \
    wait_for "8 patches with ${rv}" want_patched "${PREFIX}/app-secret" "${rv}" "${SHOP_VOLUME_PODS[@]}" "${SHOP_UP_TO_DATE}"
  stop w
  check "  ... and it exits 0 on SIGTERM" test "${RC}" = 0
}

test_refused_list() {
  server_start refused --deny list:pods
  kubeconfig "${CASE}/kubeconfig" "{tokenFile: ${WORK}/token-1}"
  nudger r --kubeconfig "${CASE}/kubeconfig"
  LAST=r
  check "a refused list: not Ready; /readyz names the verb, the resource and the rule" \
    wait_for "/readyz 503" not_ready_with r "forbidden: cannot list pods in namespace shop (RBAC: add list,watch on pods)"
  ctl deny >/dev/null
  check "  ... allowed: Ready within the backoff" wait_for "/readyz 200" ready r
  stop r
}

test_credentials() {
  server_start creds
  local sa="${WORK}/sa" rv stamp kind
  # In a pod: the ServiceAccount, its token swapped in as the kubelet does when it rotates.
  mkdir -p "${sa}"
  printf 'tok-1 user-one\ntok-2 user-two\n' >"${WORK}/tokens"
  secret_dir_swap "${sa}" token tok-1
  cp "${CERTS}/ca.crt" "${sa}/ca.crt"
  printf 'shop' >"${sa}/namespace"
  KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=${PORT} NUDGER_SERVICEACCOUNT_DIR=${sa} \
    nudger sa
  LAST=sa
  check "in a pod: the ServiceAccount's token, CA and namespace (shop)" \
    all wait_for "/readyz 200" ready sa -- logged sa "in namespace shop through https://127.0.0.1:${PORT} (ServiceAccount" -- \
    asked '^list pods shop - 200 .* user-one$'
  secret_dir_swap "${sa}" token tok-2
  printf 'tok-2 user-two\n' >"${WORK}/tokens"
  ctl drop >/dev/null
  check "a rotated token: the new one is read and used (the old one is refused now)" \
    wait_for "watches as user-two" asked '^watch pods shop rv=[0-9]+ 200 .* user-two$'
  check "  ... and said in the log" logged sa "changed: using the new token"
  # Changed in place with the same size and time: only the 401 tells; read again, retried.
  stamp=$(stat -c %y "${sa}/..data/token")
  printf 'tok-3' >"${sa}/..data/token"
  touch -d "${stamp}" "${sa}/..data/token"
  printf 'tok-3 user-three\n' >"${WORK}/tokens"
  ctl drop >/dev/null
  check "a 401 for a token changed unseen: read again and retried once, no error" \
    wait_for "watches as user-three" asked '^watch pods shop rv=[0-9]+ 200 .* user-three$'
  rv=$(ctl set-data secrets shop app-secret '{"data":{"t":"MQ=="}}')
  check "  ... and changes are nudged as before" \
    wait_for "8 patches" want_patched "${PREFIX}/app-secret" "${rv}" "${SHOP_VOLUME_PODS[@]}" "${SHOP_UP_TO_DATE}"
  stop sa
  printf 'tok-1 user-one\n' >"${WORK}/tokens"

  # An exec credential plugin, as kubectl runs it; and a server whose CA is not checked.
  {
    printf '#!/bin/sh\n'
    # shellcheck disable=SC2016 # the plugin's own variables, expanded when it runs
    printf 'printf "%%s %%s\\n" "${PLUGIN_ENV:-}" "${KUBERNETES_EXEC_INFO:-}" >"%s/exec.info"\n' "${CASE}"
    printf "printf '%s'\n" '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"tok-exec"}}'
  } >"${WORK}/exec-plugin"
  chmod +x "${WORK}/exec-plugin"
  printf 'tok-1 user-one\ntok-exec user-exec\n' >"${WORK}/tokens"
  kubeconfig "${CASE}/kc-exec" "{exec: {apiVersion: client.authentication.k8s.io/v1, command: ${WORK}/exec-plugin, args: [get-token], env: [{name: PLUGIN_ENV, value: set}]}}"
  nudger plugin --kubeconfig "${CASE}/kc-exec"
  LAST=plugin
  check "an exec plugin (client.authentication.k8s.io/v1): its token used; its env and KUBERNETES_EXEC_INFO given" \
    all wait_for "/readyz 200" ready plugin -- asked '^list pods shop - 200 .* user-exec$' -- \
    grep -q '^set {"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"' "${CASE}/exec.info"
  stop plugin
  sed -e '/certificate-authority:/d' -e 's|^    server: .*|&\n    insecure-skip-tls-verify: true|' \
    "${CASE}/kc-exec" >"${CASE}/kc-insecure"
  nudger insecure --kubeconfig "${CASE}/kc-insecure"
  LAST=insecure
  check "insecure-skip-tls-verify: true and no CA: the server's certificate is not checked, Ready" \
    wait_for "/readyz 200" ready insecure
  stop insecure
  sed -e '/certificate-authority:/d' "${CASE}/kc-exec" >"${CASE}/kc-no-ca"
  run_nudger --kubeconfig "${CASE}/kc-no-ca"
  check "no CA and no insecure-skip-tls-verify: exit 1, one line saying what to add" \
    all rc_is 1 -- err_lines 1 -- err_has "no certificate-authority(-data) for https://127.0.0.1:${PORT}"
  printf 'tok-1 user-one\n' >"${WORK}/tokens"

  for kind in ec rsa; do
    if [[ "${kind}" == ec ]]; then
      kubeconfig "${CASE}/kc-${kind}" "{client-certificate: ${CERTS}/client-ec.crt, client-key: ${CERTS}/client-ec.key}"
    else
      kubeconfig "${CASE}/kc-${kind}" "{client-certificate-data: $(base64 -w0 "${CERTS}/client-rsa.crt"), client-key-data: $(base64 -w0 "${CERTS}/client-rsa.key")}"
    fi
    nudger "cert-${kind}" --kubeconfig "${CASE}/kc-${kind}" --namespace other
    LAST=cert-${kind}
    check "a client certificate with an ${kind^^} key: authenticated as its CN, Ready" \
      all wait_for "/readyz 200" ready "cert-${kind}" -- asked '^list pods other - 200 .* test-user$'
    stop "cert-${kind}"
  done
}

test_scopes() {
  server_start scopes
  kubeconfig "${CASE}/kubeconfig" "{tokenFile: ${WORK}/token-1}"
  nudger all --kubeconfig "${CASE}/kubeconfig" --all-namespaces
  LAST=all
  check "--all-namespaces under a Role: /readyz names the ClusterRole it needs" \
    wait_for "/readyz 503" not_ready_with all "forbidden: cannot list secrets at the cluster scope (RBAC: a ClusterRole with list,watch on secrets)"
  stop all
  server_start scopes-cluster --cluster-role
  kubeconfig "${CASE}/kubeconfig" "{tokenFile: ${WORK}/token-1}"
  nudger all --kubeconfig "${CASE}/kubeconfig" --all-namespaces
  nudger two --kubeconfig "${CASE}/kubeconfig" --namespace other --namespace long --dry-run
  wait_for "/readyz 200" ready all || true
  wait_for "/readyz 200" ready two || true
  local rv
  rv=$(ctl set-data secrets other app-secret '{"data":{"o":"MQ=="}}')
  check "--all-namespaces under a ClusterRole: a change in namespace other is nudged" \
    wait_for "the patch in other" want_patched "${PREFIX}/app-secret" "${rv}" web-7f6d5c4b3-n8m7k
  LAST=two
  check "--namespace other --namespace long --dry-run: would-nudge, and no patch of its own" \
    all wait_for "the would-nudge line" logged two "would-nudge pod/web-7f6d5c4b3-n8m7k in namespace other: ${PREFIX}/app-secret=${rv}" -- \
    asked_n 1 '^patch pods other '
  check "  ... it watches both namespaces" all asked '^watch secrets long ' -- asked '^watch pods other '
  stop all
  stop two
}

test_restart() {
  server_start restart
  kubeconfig "${CASE}/kubeconfig" "{tokenFile: ${WORK}/token-1}"
  nudger r1 --kubeconfig "${CASE}/kubeconfig" --restart-unreloadable
  nudger r2 --kubeconfig "${CASE}/kubeconfig" --restart-unreloadable=true
  LAST=r1
  wait_for "/readyz 200" ready r1 || true
  wait_for "/readyz 200" ready r2 || true
  local rv w missing=""
  rv=$(ctl set-data secrets shop app-secret '{"data":{"r":"MQ=="}}')
  for w in deployments:billing deployments:gateway deployments:legacy deployments:mixed deployments:worker statefulsets:reports; do
    wait_for "a restart of ${w}" asked_n 1 "^patch ${w%%:*} shop ${w#*:} 200 " || missing+=" ${w}"
  done
  check "two replicas with --restart-unreloadable: each Deployment and StatefulSet of a pod it cannot help restarted exactly once${missing:+; not:${missing}}" \
    test -z "${missing}"
  local restarted="^patch deployments shop billing 200 - [{]\"metadata\":[{]\"resourceVersion\":\"[0-9]+\"[}],\"spec\":[{]\"template\":[{]\"metadata\":[{]\"annotations\":[{]\"kubectl[.]kubernetes[.]io/restartedAt\":\"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\",\"${PREFIX}/app-secret\":\"${rv}\"[}]"
  check "  ... as kubectl rollout restart does (restartedAt, RFC 3339), with ${PREFIX}/app-secret=${rv} and the workload's resourceVersion as a precondition" \
    asked "${restarted}"
  check "  ... the pods that mount it are nudged all the same" \
    wait_for "the patch of api-0" asked '^patch pods shop api-0 200 '
  check "  ... nothing else (a ReplicaSet without Deployment, a Job, a bare pod) is touched" \
    not_asked '^patch (replicasets|jobs|daemonsets) '
  wait_for "r1 done" logged_least r1 1 'Secret shop/app-secret changed' || true
  wait_for "r2 done" logged_least r2 1 'Secret shop/app-secret changed' || true
  local restarted_n unchanged_n
  restarted_n=$(cat "${CASE}/r1.log" "${CASE}/r2.log" | grep -cE '] restarted (deployment|statefulset)/' || true)
  unchanged_n=$(cat "${CASE}/r1.log" "${CASE}/r2.log" | grep -cE '] unchanged (deployment|statefulset)/' || true)
  check "  ... the replicas say restarted 6 times in all (${restarted_n}), and unchanged for the others (${unchanged_n})" \
    all same "${restarted_n}" 6 -- same "${unchanged_n}" 6
  stop r1
  stop r2
}

main() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) printf 'tests/nudger.sh: error: unknown argument %s\n' "$1" >&2; exit 2 ;;
  esac
  local cmd
  for cmd in python3 openssl curl; do
    command -v "${cmd}" >/dev/null || { printf 'tests/nudger.sh: error: %s is needed\n' "${cmd}" >&2; exit 1; }
  done
  [[ -x "${BIN}" ]] || { printf 'tests/nudger.sh: error: %s is missing: cargo build -p hello-path-nudger\n' "${BIN}" >&2; exit 1; }
  WORK=$(mktemp -d)
  trap cleanup EXIT
  CERTS="${WORK}/certs"
  python3 "${FAKE}" certs "${CERTS}"
  printf 'tok-1 user-one\n' >"${WORK}/tokens"
  make_fixtures

  test_static
  test_shop
  test_vanished
  test_watch
  test_refused_list
  test_credentials
  test_scopes
  test_restart
  tap_summary
}

main "$@"
