#!/usr/bin/env bash
# tests/nudge.sh — scripts/nudge.sh end to end without a cluster: the real kubectl, its
# go-templates and error messages, against a fake API server (tests/lib/fake_apiserver.py)
# that serves recorded Pods, Secrets, ConfigMaps and ReplicaSets
# (tests/fixtures/nudge/*.json), applies and logs the PATCHes, and enforces the Role of
# k8s/nudge-rbac.
#
#   1. --help; bad arguments exit 2 before any request; no reachable cluster exits 2 (the
#      current context points nowhere, KUBECTL is no command, the server never answers);
#      the script is one self-contained bash file, shellcheck-clean (when shellcheck is
#      installed), committed executable and run as such;
#   2. namespace shop: exactly which pods are annotated with what (the PATCHes the server
#      applied), the whole report (tests/fixtures/nudge/shop.out), every request bounded
#      by --request-timeout; volumes, projected volumes, env, envFrom, subPath-only,
#      several containers, init containers, pods of other Secrets, terminating and not
#      running pods;
#   3. a repeat run changes nothing and says so; after a Secret change every pod is
#      nudged again; --dry-run patches nothing; the namespace of the context; another
#      namespace; a long Secret name (a key of at most 63, with a stable hash);
#   4. ConfigMaps (configmap/NAME) the same way: volumes, projected volumes, configMapKeyRef
#      env, configMapRef envFrom, subPath, a Secret of the same name left alone, their own
#      annotation key; repeat, change, --dry-run; a bare NAME is a Secret; the Role grants
#      exactly the requests of the Secret and ConfigMap runs, each verb used; a missing
#      ConfigMap, a missing namespace (-n, or the context's) named as such;
#   5. refusals, each exit 1 with one line naming the verb and the resource: get secrets,
#      get configmaps, list pods, get pods, patch pods (all, one pod, one whose name begins
#      another's), get replicasets; the Secret not found; a pod deleted between the list
#      and the patch;
#   6. our own overlays (k8s/rendered/volume-reload, rotate, env-reload, subpath), their
#      Deployments turned into the pods their ReplicaSets would run;
#   7. the answers the fake kubectl of the dry --kube walkthrough gives nudge.sh's calls
#      (tests/fixtures/nudge-answers/) are what the real kubectl prints for them now
#      (tests/lib/nudge-answers.sh --check).
#
# Usage: tests/nudge.sh [-h|--help]
# Prints `ok - ...` / `not ok - ...` lines and ends with `N passed, M failed`.
# Needs kubectl (the client only) and python3; runs shellcheck when it is installed.
# Environment: KUBECTL, the kubectl client to test with (default: kubectl; no spaces).
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly NUDGE="${ROOT}/scripts/nudge.sh"
readonly FAKE="${ROOT}/tests/lib/fake_apiserver.py"
readonly FIXTURES="${ROOT}/tests/fixtures/nudge"
readonly PREFIX=secret.nudge.hello-path-rs
readonly CM_PREFIX=configmap.nudge.hello-path-rs
readonly USER_NAME=system:serviceaccount:shop:secret-nudge
readonly CLIENT=${KUBECTL:-kubectl}
readonly SHOP_RV=48213
# The pods of namespace shop that mount app-secret as a volume and run.
readonly SHOP_VOLUME_PODS=(api-0 gateway-9c8b7d6f5-h4j6k mixed-6f8d9c7b5-t6y2u node-agent-x7p2q
  web-6d8f7c9b54-2xkqp web-6d8f7c9b54-7hn4t worker-5c7b9d8f6-k2m9x)
readonly SHOP_UP_TO_DATE=web-6d8f7c9b54-r5wzm # annotated with ${SHOP_RV} already
# ConfigMap app-config of namespace shop: its resourceVersion, the running pods that mount
# it as a volume and lack it, the one that has it.
readonly CM_RV=48300
readonly CM_VOLUME_PODS=(jobs-0 site-7b8c9d6f5-a1b2c)
readonly CM_UP_TO_DATE=site-7b8c9d6f5-d3e4f
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"
WORK=""
SERVER_PID=""
CASE=""
KUBE=""
ROLE=""
RC=0
MARK=0
SUMMARY_OF=secret=app-secret # the object of the NUDGE lines the checks expect
OVERLAY_PODS=()
OVERLAY_RV=""
readonly OVERLAYS=(volume-reload rotate env-reload subpath)
# Bad calls, one string of arguments each.
readonly BAD_ARGS=("--namespace" "app-secret --bogus" "app-secret other-secret" "app-secret -n"
  "app-secret --context" "Bad_Name -n shop" "app-secret -n Shop_1" "app-secret --namespace="
  "deployment/web -n shop" "configmap/ -n shop" "configmap/Bad_Name -n shop" "secret/a/b -n shop")

usage() { sed -n '2,/^set -o/{/^set -o/d;s/^# \{0,1\}//;p}' "$0"; }

cleanup() {
  server_stop
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then
    rm -rf -- "${WORK}"
  fi
}

# case_details — what the last run printed and asked for, under a failed check.
case_details() {
  [[ -n "${CASE}" && -f "${CASE}/out" ]] || return 0
  printf '    exit %s; stdout:\n' "${RC}"
  sed 's/^/      /' "${CASE}/out"
  printf '    stderr:\n'
  sed 's/^/      /' "${CASE}/err"
  printf '    requests:\n'
  requests | sed 's/^/      /'
}
# check WHAT COMMAND... — tap.sh's check, with the case's details under a failure.
check() {
  local what=$1
  shift
  if "$@"; then ok "${what}"; else not_ok "${what}"; case_details; fi
}

# server_start NAME FIXTURE_DIR [FAKE-ARG...] — a fresh fake API server for case NAME
# (the Role enforced once ROLE is set); sets CASE, its directory, and KUBE, the kubectl
# command for it. At most 10 s for it to listen.
server_start() {
  server_stop
  local name=$1 fixtures=$2
  shift 2
  CASE="${WORK}/${name}"
  mkdir -p "${CASE}"
  local -a role=()
  [[ -z "${ROLE}" ]] || role=(--role "${ROLE}" --user "${USER_NAME}")
  python3 "${FAKE}" serve --fixtures "${fixtures}" --port-file "${CASE}/port" \
    --log "${CASE}/log" "${role[@]}" "$@" >"${CASE}/server.err" 2>&1 &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ ! -s "${CASE}/port" ]] || break
    kill -0 "${SERVER_PID}" 2>/dev/null || break
    sleep 0.1
  done
  if [[ ! -s "${CASE}/port" ]]; then
    cat "${CASE}/server.err" >&2
    printf 'tests/nudge.sh: the fake API server did not start within 10s\n' >&2
    exit 1
  fi
  sed "s/@PORT@/$(cat "${CASE}/port")/" "${FIXTURES}/kubeconfig.in" >"${CASE}/kubeconfig"
  touch "${CASE}/log"
  KUBE="${CLIENT} --kubeconfig ${CASE}/kubeconfig --cache-dir ${WORK}/kube-cache"
}
server_stop() {
  if [[ -n "${SERVER_PID}" ]]; then
    kill "${SERVER_PID}" 2>/dev/null || true
    wait "${SERVER_PID}" 2>/dev/null || true
    SERVER_PID=""
  fi
}

# nudge ARG... — scripts/nudge.sh with KUBECTL=${KUBE}, bounded: sets RC, writes
# CASE/out and CASE/err, and MARK, where its requests start in CASE/log.
nudge() {
  MARK=$(wc -l <"${CASE}/log")
  RC=0
  KUBECTL="${KUBE}" timeout 120 "${NUDGE}" "$@" >"${CASE}/out" 2>"${CASE}/err" || RC=$?
}
# requests — the log lines of the last run's requests.
requests() { tail -n "+$((MARK + 1))" "${CASE}/log"; }
# patched — "POD BODY" for every PATCH of the last run the server applied, sorted.
patched() { requests | awk '$1 == "patch" && $5 == 200 { print $4, $7 }' | sort; }

# Predicates on the last run, for `check` (and `all`).
rc_is() { [[ "${RC}" -eq "$1" ]]; }
# want_patched KEY VALUE POD... — the run annotated exactly these pods with KEY=VALUE.
want_patched() {
  local key=$1 value=$2 pod want
  shift 2
  want=$(for pod in "$@"; do
    printf '%s {"metadata":{"annotations":{"%s":"%s"}}}\n' "${pod}" "${key}" "${value}"
  done | sort)
  [[ "$(patched)" == "${want}" ]]
}
patched_count() { [[ "$(patched | grep -c .)" -eq "$1" ]]; }
# asked PATTERN N — N requests of the run match the grep PATTERN (VERB RESOURCE ...).
asked() { [[ "$(requests | grep -c -- "$1")" -eq "$2" ]]; }
no_patch() { asked '^patch ' 0; }
no_request() { asked '^[a-z]' 0; }
# bounded SECONDS — every request to the API carried kubectl's ?timeout=SECONDS.
bounded() { [[ -z "$(requests | awk -v t="$1s" '$1 != "-" && $6 != t')" ]]; }
err_is() { [[ "$(cat "${CASE}/err")" == "$1" ]]; }
err_empty() { [[ ! -s "${CASE}/err" ]]; }
# err_line PREFIX — stderr is one line, starting with PREFIX.
err_line() { [[ "$(wc -l <"${CASE}/err")" -eq 1 ]] && grep -q -- "^$1" "${CASE}/err"; }
out_empty() { [[ ! -s "${CASE}/out" ]]; }
out_has() { grep -qxF -- "$1" "${CASE}/out"; }
# out_starts TEXT — a line of stdout starts with TEXT.
out_starts() {
  local line
  while IFS= read -r line; do
    [[ "${line}" != "$1"* ]] || return 0
  done <"${CASE}/out"
  return 1
}
out_lacks() { ! grep -qE -- "$1" "${CASE}/out"; }
# out_count REGEX N — N lines of stdout match REGEX.
out_count() { [[ "$(grep -cE -- "$1" "${CASE}/out")" -eq "$2" ]]; }
last_is() { [[ "$(tail -n 1 "${CASE}/out")" == "$1" ]]; }
# usage_refused — exit 2, an error line and the hint, no request at all.
usage_refused() {
  all rc_is 2 -- no_request -- grep -q '^nudge.sh: error: ' "${CASE}/err" -- \
    grep -q "^Try '" "${CASE}/err" -- same "$(wc -l <"${CASE}/err")" 2
}
# summary N U C S [NS RV DRY] — the NUDGE line of ${SUMMARY_OF} with those figures.
summary() {
  printf 'NUDGE %s nudged=%s unchanged=%s cannot_help=%s skipped=%s namespace=%s resource_version=%s dry_run=%s' \
    "${SUMMARY_OF}" "$1" "$2" "$3" "$4" "${5:-shop}" "${6:-${SHOP_RV}}" "${7:-false}"
}
# self_contained — no command of scripts/nudge.sh (outside comments) sources a file or
# runs what is neither bash, coreutils nor kubectl, yet common in images: python, jq, grep,
# sed, awk, perl.
self_contained() {
  ! grep -vE '^[[:space:]]*#' "${NUDGE}" |
    grep -qE '(^|[;&|({]|then|do|else)[[:space:]]*(source|\.)[[:space:]]|(^|[^-[:alnum:]_])(python3?|jq|grep|sed|awk|perl)([^-[:alnum:]_]|$)'
}

test_static() {
  CASE="${WORK}/static"
  mkdir -p "${CASE}"
  touch "${CASE}/log"
  RC=0
  KUBECTL=/nonexistent "${NUDGE}" --help >"${CASE}/out" 2>"${CASE}/err" || RC=$?
  check "--help exits 0 without kubectl and shows usage, environment and exit codes" \
    all rc_is 0 -- err_empty -- \
    out_starts "Usage: scripts/nudge.sh [secret/]NAME|configmap/NAME [-n|--namespace NS] [--context CONTEXT]" -- \
    out_starts "  KUBECTL " -- out_has "Exit codes:" -- out_lacks '^set -o'
  # The README tells people to run it: it must run as a command (the tests do run it so).
  check "scripts/nudge.sh is executable" test -x "${NUDGE}"
  if git -C "${ROOT}" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    check "scripts/nudge.sh is committed executable (git mode 100755)" \
      same "$(git -C "${ROOT}" ls-files -s scripts/nudge.sh | cut -d' ' -f1)" 100755
  else
    printf 'skip - not a git checkout: the committed mode of scripts/nudge.sh is not known\n'
  fi
  check "scripts/nudge.sh is one file: it sources nothing, runs no python, jq, grep, sed, awk" self_contained
  check "scripts/nudge.sh parses (bash -n)" bash -n "${NUDGE}"
  if command -v shellcheck >/dev/null 2>&1; then
    check "shellcheck scripts/nudge.sh tests/nudge.sh" \
      shellcheck -x "${NUDGE}" "${ROOT}/tests/nudge.sh"
  else
    printf 'skip - shellcheck not installed (scripts/test.sh --only shellcheck runs it)\n'
  fi
}

test_arguments() {
  local -a args
  local line
  for line in "${BAD_ARGS[@]}"; do
    read -r -a args <<<"${line}"
    nudge "${args[@]}"
    check "bad arguments '${line}': exit 2, one error line and the hint, no request" usage_refused
  done
  nudge
  check "no Secret given: exit 2, no request" usage_refused
  NUDGE_REQUEST_TIMEOUT=soon nudge app-secret -n shop --context fake
  check "NUDGE_REQUEST_TIMEOUT=soon: exit 2, no request" usage_refused
}

test_unreachable() {
  nudge app-secret -n shop
  check "the current context's server is down (no --context fake): exit 2, one line, no request" \
    all rc_is 2 -- err_line "nudge.sh: error: no cluster reachable with " -- no_request -- out_empty
  local kube=${KUBE}
  KUBE="kubectl-does-not-exist --kubeconfig ${CASE}/kubeconfig"
  nudge app-secret -n shop --context fake
  KUBE=${kube}
  check "KUBECTL is no command: exit 2, one line" all rc_is 2 -- \
    err_is "nudge.sh: error: no cluster: 'kubectl-does-not-exist' (KUBECTL) is not on PATH"
}

test_shop() {
  local key="${PREFIX}/app-secret" rv
  nudge app-secret -n shop --context fake
  check "shop: exit 0, nothing on stderr" all rc_is 0 -- err_empty
  check "shop: exactly the 7 running pods that mount app-secret as a volume and lack its resourceVersion are annotated ${key}=${SHOP_RV}" \
    want_patched "${key}" "${SHOP_RV}" "${SHOP_VOLUME_PODS[@]}"
  check "shop: the report is tests/fixtures/nudge/shop.out" \
    diff -u "${FIXTURES}/shop.out" "${CASE}/out"
  check "shop: a pod with a volume and env (in the same or another container) is nudged and reported" \
    all out_count "^nudged pod/gateway-9c8b7d6f5-h4j6k " 1 -- \
    out_count "^cannot-help pod/gateway-9c8b7d6f5-h4j6k: env API_TOKEN in container gateway;" 1 -- \
    out_count "^nudged pod/worker-5c7b9d8f6-k2m9x " 1 -- \
    out_count "^cannot-help pod/worker-5c7b9d8f6-k2m9x: env DB_PASSWORD in container worker;" 1
  check "shop: pods of other Secrets and of other namespaces are neither patched nor named" \
    out_lacks "other-7c9d8f6b5|web-7f6d5c4b3"
  check "shop: a pod annotated nudge.hello-path-rs/ignore: \"true\" is skipped as opted out, never patched" \
    all out_count '^skipped pod/web-6d8f7c9b54-o9p8q: opted out [(]nudge.hello-path-rs/ignore: "true"[)]$' 1 -- \
    asked '^patch pods shop web-6d8f7c9b54-o9p8q ' 0
  check "shop: every request bounded by --request-timeout=10s" bounded 10
  # After a 404 (ReplicaSet cache-5b6c7d8e9), kubectl GETs the namespace to tell which of
  # the two is missing; refused, it reports the 404 it had: no rule is needed for it.
  check "shop: no request refused by the Role but kubectl's namespace probe after a 404" \
    all asked ' 403 ' 1 -- asked '^get namespaces shop shop 403 ' 1
  requests >"${WORK}/used" # for the Role's check, after the ConfigMap run (test_configmaps)

  nudge app-secret -n shop --context fake
  check "repeat: exit 0, no PATCH, no GET of a pod" \
    all rc_is 0 -- err_empty -- no_patch -- asked '^get pods ' 0
  check "repeat: every volume pod unchanged, and it says so" \
    all out_count "^unchanged pod/" 8 -- out_count "^nudged pod/" 0 -- \
    out_has "unchanged pod/api-0: already has ${key}=${SHOP_RV}" -- \
    out_starts "nothing changed: the pods that mount Secret app-secret already have its resourceVersion ${SHOP_RV}; 10 pod(s) keep the old value until restarted"
  check "repeat: the summary line" last_is "$(summary 0 8 10 5)"

  rv=$(python3 "${FAKE}" ctl "${CASE}/port" bump-secret shop app-secret)
  nudge app-secret -n shop --context fake
  check "after a change of the Secret (resourceVersion ${rv}): the 8 volume pods annotated again, with it" \
    all rc_is 0 -- want_patched "${key}" "${rv}" "${SHOP_VOLUME_PODS[@]}" "${SHOP_UP_TO_DATE}" -- \
    last_is "$(summary 8 0 10 5 shop "${rv}")"

  rv=$(python3 "${FAKE}" ctl "${CASE}/port" bump-secret shop app-secret)
  nudge app-secret -n shop --context fake --dry-run
  check "--dry-run: exit 0, no PATCH and no GET of a pod, 8 would-nudge lines" \
    all rc_is 0 -- no_patch -- asked '^get pods ' 0 -- out_count "^would-nudge pod/" 8 -- \
    out_has "would-nudge pod/api-0 ${key}=${rv} (projected volume bundle in container api)"
  check "--dry-run: says so, and dry_run=true in the summary" \
    all out_starts "dry run: would nudge 8 pod(s), patched nothing" -- \
    last_is "$(summary 8 0 10 5 shop "${rv}" true)"

  nudge app-secret --context fake
  check "no -n: the namespace of the context (shop), 8 nudged" \
    all rc_is 0 -- want_patched "${key}" "${rv}" "${SHOP_VOLUME_PODS[@]}" "${SHOP_UP_TO_DATE}" -- \
    last_is "$(summary 8 0 10 5 shop "${rv}")"

  nudge app-secret --namespace=other --context=fake
  check "namespace other: only its own pod, with its own Secret's resourceVersion" \
    all rc_is 0 -- want_patched "${key}" 51002 web-7f6d5c4b3-n8m7k -- \
    last_is "$(summary 1 0 0 0 other 51002)"

  nudge nope -n shop --context fake
  check "a Secret not found: exit 1, one line, nothing listed or printed" \
    all rc_is 1 -- err_is "nudge.sh: error: Secret nope not found in namespace shop" -- \
    out_empty -- asked '^list ' 0
  nudge nope --context fake
  check "a Secret not found, no -n: exit 1, one line" all rc_is 1 -- \
    err_is "nudge.sh: error: Secret nope not found in the context's namespace"
  SUMMARY_OF=secret=other-secret
  nudge other-secret -n shop --context fake
  check "another Secret: the pod that mounts it nudged, the pod reading it from env reported" \
    all rc_is 0 -- want_patched "${PREFIX}/other-secret" 48100 other-7c9d8f6b5-z9x8w -- \
    out_has "cannot-help pod/billing-7f9c8d6b5-q4w8z: env OTHER_TOKEN in container billing; cure: kubectl rollout restart deployment/billing -n shop" -- \
    last_is "$(summary 1 0 2 0 shop 48100)"
  SUMMARY_OF=secret=app-secret
}

# On the server of test_shop: ConfigMap app-config (and others) of namespace shop.
test_configmaps() {
  local key="${CM_PREFIX}/app-config" rv
  SUMMARY_OF=configmap=app-config
  nudge configmap/app-config -n shop --context fake
  check "configmap/app-config: exit 0, nothing on stderr, one GET of the ConfigMap and none of a Secret" \
    all rc_is 0 -- err_empty -- asked '^get configmaps shop app-config 200 ' 1 -- asked '^get secrets ' 0
  check "configmap/app-config: exactly the running pods that mount it as a volume (directly; projected, in an init container) are annotated ${key}=${CM_RV}" \
    want_patched "${key}" "${CM_RV}" "${CM_VOLUME_PODS[@]}"
  check "configmap/app-config: the report is tests/fixtures/nudge/shop-configmap.out" \
    diff -u "${FIXTURES}/shop-configmap.out" "${CASE}/out"
  check "configmap/app-config: a pod with secret.nudge.hello-path-rs/app-config=${CM_RV} is nudged all the same (the kinds' keys differ)" \
    out_starts "nudged pod/site-7b8c9d6f5-a1b2c ${key}=${CM_RV} (volume config in container nginx)"
  check "configmap/app-config: configMapKeyRef env and a subPath mount are reported with their cure" \
    all out_has "cannot-help pod/jobs-0: env LOG_LEVEL in container jobs; cure: kubectl rollout restart statefulset/jobs -n shop" -- \
    out_has "cannot-help pod/proxy-6c5d4e3f2-g5h6j: subPath mount of volume conf in container proxy; cure: kubectl rollout restart deployment/proxy -n shop"
  check "configmap/app-config: a pod using a Secret named app-config (volume, env, envFrom) is neither patched nor named" \
    out_lacks lookalike
  check "configmap/app-config: every request bounded by --request-timeout=10s" bounded 10
  # The Role grants exactly what the Secret and the ConfigMap runs used (that each verb is
  # needed: the refusals).
  local used granted
  used=$({ cat "${WORK}/used"; requests; } | awk '$1 != "-" && $5 != 403 { print $1, $2 }' | sort -u)
  granted=$(python3 "${FAKE}" role-verbs "${ROLE}" | sort -u)
  check "the Role of k8s/nudge-rbac grants exactly the requests of the Secret and ConfigMap runs ($(paste -sd, <<<"${used}"))" \
    same "${used}" "${granted}"

  nudge configmap/app-config -n shop --context fake
  check "configmap repeat: exit 0, no PATCH, every volume pod unchanged, the summary line" \
    all rc_is 0 -- no_patch -- out_count "^unchanged pod/" 3 -- \
    out_starts "nothing changed: the pods that mount ConfigMap app-config already have its resourceVersion ${CM_RV}" -- \
    last_is "$(summary 0 3 2 1 shop "${CM_RV}")"

  rv=$(python3 "${FAKE}" ctl "${CASE}/port" bump-configmap shop app-config)
  nudge configmaps/app-config -n shop --context fake --dry-run
  check "configmaps/app-config --dry-run after a change (resourceVersion ${rv}): no PATCH, 3 would-nudge lines" \
    all rc_is 0 -- no_patch -- out_count "^would-nudge pod/" 3 -- \
    last_is "$(summary 3 0 2 1 shop "${rv}" true)"
  nudge cm/app-config --context fake
  check "cm/app-config, the context's namespace: the 3 volume pods annotated with it" \
    all rc_is 0 -- want_patched "${key}" "${rv}" "${CM_VOLUME_PODS[@]}" "${CM_UP_TO_DATE}" -- \
    last_is "$(summary 3 0 2 1 shop "${rv}")"

  SUMMARY_OF=configmap=api-config
  nudge configmap/api-config -n shop --context fake
  check "configmap/api-config: the pod that projects it (with a Secret) nudged with its own key" \
    all rc_is 0 -- want_patched "${CM_PREFIX}/api-config" 48290 api-0 -- \
    out_has "nudged pod/api-0 ${CM_PREFIX}/api-config=48290 (projected volume bundle in container api)" -- \
    last_is "$(summary 1 0 0 0 shop 48290)"
  SUMMARY_OF=configmap=reports-config
  nudge configmap/reports-config -n shop --context fake
  check "configmap/reports-config: only envFrom: nothing patched, the pod reported with its cure" \
    all rc_is 0 -- no_patch -- \
    out_has "cannot-help pod/reports-0: envFrom in container reports; cure: kubectl rollout restart statefulset/reports -n shop" -- \
    last_is "$(summary 0 0 1 0 shop 48291)"

  nudge configmap/nope -n shop --context fake
  check "a ConfigMap not found: exit 1, one line, nothing listed or printed" \
    all rc_is 1 -- err_is "nudge.sh: error: ConfigMap nope not found in namespace shop" -- \
    out_empty -- asked '^list ' 0
  nudge app-config -n shop --context fake
  check "a bare NAME is a Secret: app-config (a ConfigMap only) not found, exit 1, no ConfigMap asked" \
    all rc_is 1 -- err_is "nudge.sh: error: Secret app-config not found in namespace shop" -- \
    asked '^get configmaps ' 0
  SUMMARY_OF=secret=app-secret
  nudge secret/app-secret -n shop --context fake --dry-run
  check "secret/app-secret is the Secret app-secret (NUDGE secret=app-secret)" \
    all rc_is 0 -- asked '^get secrets shop app-secret 200 ' 1 -- out_starts "NUDGE secret=app-secret nudged=0 unchanged=8 "
}

# A missing namespace, as a user who may read namespaces sees it (kubectl asks for the
# namespace after a 404, and names it): a server without the Role.
test_missing_namespace() {
  local saved_role=${ROLE}
  ROLE=""
  server_start admin "${FIXTURES}"
  ROLE=${saved_role}
  nudge app-secret -n nowhere --context fake
  check "-n nowhere (no such namespace): exit 1, the namespace named as missing, nothing listed" \
    all rc_is 1 -- err_is "nudge.sh: error: namespace nowhere not found" -- out_empty -- asked '^list ' 0
  nudge configmap/app-config -n nowhere --context fake
  check "configmap/app-config -n nowhere: the same" \
    all rc_is 1 -- err_is "nudge.sh: error: namespace nowhere not found"
  nudge app-secret --context nowhere
  check "the context's namespace does not exist: exit 1, it is named" \
    all rc_is 1 -- err_is "nudge.sh: error: namespace nowhere not found (the context's namespace)"
  nudge nope -n shop --context fake
  check "... while in a namespace that exists a Secret not found is still one" \
    all rc_is 1 -- err_is "nudge.sh: error: Secret nope not found in namespace shop"
}

test_long_names() {
  local long=payment-gateway-credentials-for-the-checkout-service-eu-west-1.production
  local exact=checkout-credentials-for-the-eu-west-1-payment-gateway-prod-v20
  local hash key
  hash=$(python3 -c 'import hashlib, sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest()[:10])' "${long}")
  key="${PREFIX}/${long:0:52}-${hash}"
  nudge "${long}" -n long --context fake
  check "a ${#long}-character Secret name: the key's name part is its first 52 characters, '-' and 10 hex digits of its sha256 (${key#*/})" \
    all rc_is 0 -- want_patched "${key}" 60311 pay-6b5c4d3e2-f9g8h
  check "that key is a valid qualified name (name part <= 63, alphanumeric at both ends)" \
    all same "$((${#key} <= 253))" 1 -- grep -qE '^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$' <<<"${key#*/}"
  nudge "${long}" -n long --context fake
  check "the hashed key is stable: a second run leaves the pod unchanged" \
    all rc_is 0 -- no_patch -- out_has "unchanged pod/pay-6b5c4d3e2-f9g8h: already has ${key}=60311"
  nudge "${exact}" -n long --context fake
  check "a 63-character Secret name is the key's name part as it is" \
    all rc_is 0 -- want_patched "${PREFIX}/${exact}" 60312 pay-6b5c4d3e2-f9g8h
}

# refused NAME DENY WANT-ERROR — a fresh server refusing DENY (VERB:RESOURCE[:NAME]) and a
# run over shop: exit 1 and exactly WANT-ERROR on stderr.
refused() {
  server_start "$1" "${FIXTURES}" --deny "$2"
  nudge app-secret -n shop --context fake
  check "refused $2: exit 1, one line: ${3#nudge.sh: error: }" all rc_is 1 -- err_is "$3"
}

test_refusals() {
  refused deny-get-secrets get:secrets \
    "nudge.sh: error: the API refused to get secrets/app-secret in namespace shop (Forbidden)"
  check "  ... nothing listed, nothing printed" all out_empty -- asked '^list ' 0
  server_start deny-get-configmaps "${FIXTURES}" --deny get:configmaps
  nudge configmap/app-config -n shop --context fake
  check "refused get:configmaps: exit 1, one line: the API refused to get configmaps/app-config in namespace shop (Forbidden)" \
    all rc_is 1 -- out_empty -- asked '^list ' 0 -- \
    err_is "nudge.sh: error: the API refused to get configmaps/app-config in namespace shop (Forbidden)"
  refused deny-list-pods list:pods \
    "nudge.sh: error: the API refused to list pods in namespace shop (Forbidden)"
  check "  ... nothing patched, nothing printed" all no_patch -- out_empty
  refused deny-get-pods get:pods \
    "nudge.sh: error: the API refused to get pods/api-0 in namespace shop (Forbidden)"
  check "  ... (kubectl patch GETs a pod first) no PATCH sent, the report ends with its summary" \
    all no_patch -- last_is "$(summary 0 1 10 5)"
  refused deny-patch-pods patch:pods \
    "nudge.sh: error: the API refused to patch pods/api-0 in namespace shop (Forbidden)"
  check "  ... no PATCH applied" patched_count 0
  refused deny-patch-one patch:pods:web-6d8f7c9b54-2xkqp \
    "nudge.sh: error: the API refused to patch pods/web-6d8f7c9b54-2xkqp in namespace shop (Forbidden)"
  check "  ... the other 6 pods annotated, and only they said nudged" \
    all want_patched "${PREFIX}/app-secret" "${SHOP_RV}" api-0 gateway-9c8b7d6f5-h4j6k \
    mixed-6f8d9c7b5-t6y2u node-agent-x7p2q web-6d8f7c9b54-7hn4t worker-5c7b9d8f6-k2m9x -- \
    out_count '^nudged pod/' 6 -- last_is "$(summary 6 1 10 5)"
  refused deny-get-replicasets get:replicasets \
    "nudge.sh: error: the API refused to get replicasets.apps/batch-4f5d6c7b8 in namespace shop (Forbidden)"
  check "  ... all 7 pods nudged all the same, one ReplicaSet asked, the cures name the ReplicaSets" \
    all want_patched "${PREFIX}/app-secret" "${SHOP_RV}" "${SHOP_VOLUME_PODS[@]}" -- \
    asked '^get replicasets ' 1 -- \
    out_starts "cannot-help pod/billing-7f9c8d6b5-q4w8z: env STRIPE_KEY in container billing; cure: re-create the pods of replicaset/billing-7f9c8d6b5 one at a time (its Deployment, if any, could not be read;" -- \
    out_has "cannot-help pod/reports-0: envFrom in container reports; cure: kubectl rollout restart statefulset/reports -n shop" -- \
    last_is "$(summary 7 1 10 5)"

  server_start deny-prefix "${FIXTURES}" --deny patch:pods:app-1
  nudge app-secret -n prefix --context fake
  check "pods app-1 and app-10, the patch of app-1 refused: app-10 nudged, app-1 named, never mixed up" \
    all rc_is 1 -- want_patched "${PREFIX}/app-secret" 70001 app-10 -- \
    out_count '^nudged pod/app-10 ' 1 -- out_count '^nudged pod/app-1 ' 0 -- \
    err_is "nudge.sh: error: the API refused to patch pods/app-1 in namespace prefix (Forbidden)"

  server_start vanish "${FIXTURES}" --vanish pods:web-6d8f7c9b54-2xkqp
  nudge app-secret -n shop --context fake
  check "a pod deleted between the list and the patch: exit 0, 'gone', the others nudged" \
    all rc_is 0 -- err_empty -- out_has "gone pod/web-6d8f7c9b54-2xkqp: deleted since it was listed" -- \
    patched_count 6 -- last_is "$(summary 6 1 10 6)"

  server_start hang "${FIXTURES}" --hang /api/v1/namespaces/shop/secrets/app-secret
  NUDGE_REQUEST_TIMEOUT=1 nudge app-secret -n shop --context fake
  check "a server that never answers (NUDGE_REQUEST_TIMEOUT=1): exit 2, one line" \
    all rc_is 2 -- err_line "nudge.sh: error: no cluster reachable with "
}

# overlay NAME — the nudge over the pods of k8s/rendered/NAME.yaml (turned into JSON by
# main); sets OVERLAY_PODS and OVERLAY_RV (the Secret's resourceVersion).
overlay() {
  local name=$1 dir="${WORK}/overlay-$1"
  python3 "${FAKE}" from-manifests "${WORK}/${name}.json" "${dir}"
  server_start "${name}" "${dir}"
  nudge hello-path-secret -n hello-path --context fake
  mapfile -t OVERLAY_PODS < <(grep -o '"name": "hello-path-[a-z0-9]*-[a-z0-9]*"' "${dir}/pods.json" | cut -d'"' -f4)
  OVERLAY_RV=$(grep -o '"resourceVersion": "[0-9]*"' "${dir}/secrets.json" | head -n 1 | cut -d'"' -f4)
}

test_overlays() {
  local name cure="cure: kubectl rollout restart deployment/hello-path -n hello-path"
  SUMMARY_OF=secret=hello-path-secret
  for name in volume-reload rotate; do
    overlay "${name}"
    check "overlay ${name}: both pods annotated, nothing it cannot help" \
      all rc_is 0 -- same "${#OVERLAY_PODS[@]}" 2 -- \
      want_patched "${PREFIX}/hello-path-secret" "${OVERLAY_RV}" "${OVERLAY_PODS[@]}" -- \
      out_count "^nudged pod/hello-path-.* \(volume secret in container hello-path\)$" 2 -- \
      last_is "$(summary 2 0 0 0 hello-path "${OVERLAY_RV}")"
  done
  overlay env-reload
  check "overlay env-reload: nothing patched, both pods reported with the Deployment's restart" \
    all rc_is 0 -- no_patch -- \
    out_count "^cannot-help pod/hello-path-.*: env MYSECRET in container hello-path; ${cure}$" 2 -- \
    last_is "$(summary 0 0 2 0 hello-path "${OVERLAY_RV}")"
  overlay subpath
  check "overlay subpath: nothing patched (subPath only), both pods reported with the Deployment's restart" \
    all rc_is 0 -- no_patch -- \
    out_count "^cannot-help pod/hello-path-.*: subPath mount of volume secret in container hello-path; ${cure}$" 2 -- \
    last_is "$(summary 0 0 2 0 hello-path "${OVERLAY_RV}")"
}

# The fake kubectl of tests/walkthrough.sh cannot evaluate nudge.sh's go-templates: it
# replays what the real kubectl printed for them. They must be current.
test_recorded_answers() {
  CASE="${WORK}/answers"
  mkdir -p "${CASE}"
  touch "${CASE}/log" # no request of its own to show
  MARK=0 RC=0
  KUBECTL="${CLIENT}" bash "${ROOT}/tests/lib/nudge-answers.sh" --check >"${CASE}/out" 2>"${CASE}/err" || RC=$?
  check "the dry walkthrough's fake kubectl answers nudge.sh as this kubectl does (tests/lib/nudge-answers.sh --check)" \
    all rc_is 0 -- out_empty -- err_empty
}

main() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) printf 'tests/nudge.sh: error: unknown argument %s\n' "$1" >&2; exit 2 ;;
  esac
  command -v "${CLIENT}" >/dev/null || { printf 'tests/nudge.sh: error: %s is needed\n' "${CLIENT}" >&2; exit 1; }
  command -v python3 >/dev/null || { printf 'tests/nudge.sh: error: python3 is needed\n' >&2; exit 1; }
  WORK=$(mktemp -d)
  trap cleanup EXIT

  test_static
  # A server without the Role, for the runs that make no request, and for kubectl to turn
  # the Role and our rendered overlays into JSON (it needs discovery for that).
  server_start bootstrap "${FIXTURES}"
  "${CLIENT}" kustomize "${ROOT}/k8s/nudge-rbac" >"${WORK}/rbac.yaml"
  local name src
  for name in rbac "${OVERLAYS[@]}"; do
    src="${ROOT}/k8s/rendered/${name}.yaml"
    [[ "${name}" != rbac ]] || src="${WORK}/rbac.yaml"
    ${KUBE} --context fake create --dry-run=client --validate=false -o json -f "${src}" >"${WORK}/${name}.json"
  done
  test_arguments
  test_unreachable
  ROLE="${WORK}/rbac.json"
  server_start shop "${FIXTURES}"
  test_shop
  test_configmaps
  test_long_names
  test_missing_namespace
  test_refusals
  test_overlays
  server_stop
  test_recorded_answers

  tap_summary
}

main "$@"
