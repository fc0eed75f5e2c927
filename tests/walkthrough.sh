#!/usr/bin/env bash
# walkthrough.sh — end-to-end checks of the scenario scripts (scripts/*.sh).
#
#   1. every scenario script: --help exits 0, a bad option exits 2, --context without --kube
#      exits 2;
#   2. --kube without a cluster exits 2 within seconds with one line: with KUBECTL pointing at
#      a command that fails, at a missing command, and (when kubectl is installed) with a
#      kubeconfig whose server is https://127.0.0.1:1;
#   3. wait_for (scripts/lib/wait.sh) says what it waits for every 5 s even when one round of its
#      command takes longer than that;
#   4. the LOCAL walkthrough end to end (scripts/walkthrough.sh, which builds the binary if
#      needed): reload and rotate with 0 failed requests and 0 restarts on the same PID,
#      redeploy and restart with a measured outage and 2 processes started anew, the
#      negative controls (CONTROL lines) never served, no-arg with the FATAL line, arg
#      served, every scenario with exactly one RESULT line as its last line, the table and
#      its legend printed;
#   5. a DRY --kube walkthrough against a fake kubectl (tests/fixtures/fake-kubectl) that
#      logs its argv and models each scenario: every scenario ok, every kubectl call with
#      --context, none of the flags too new for Kubernetes 1.15, every poll bounded
#      (--request-timeout), every namespace deleted; reload.sh --kube ends its stdout with
#      its one RESULT line after the CONTROL lines; and a wrong outcome (pods that never
#      reject a bad Secret) exits 1.
#
# Usage: tests/walkthrough.sh        (no options; about two minutes)
# Prints `ok - ...` / `not ok - ...` lines and ends with `N passed, M failed`.
# Environment: HELLO_PATH_BIN (the binary; default: built by scripts/walkthrough.sh).
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly SCRIPTS=(no-arg arg redeploy restart reload rotate walkthrough)
readonly FAKE_KUBECTL="${ROOT}/tests/fixtures/fake-kubectl"
WORK=""
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"

cleanup() {
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then
    rm -rf -- "${WORK}"
  fi
}

# result_of FILE SCENARIO [KIND] — the RESULT (or KIND: CONTROL) line of SCENARIO in a
# (possibly indented) output.
result_of() {
  sed -n "s/^.*\\(${3:-RESULT} scenario=$2 .*\\)$/\\1/p" "$1" | tail -n 1
}
# bad_blocks FILE — the scenarios of a (not --quiet) walkthrough output whose block does not
# hold exactly one RESULT line as its last line.
bad_blocks() {
  awk '/ === [a-z-]+: scripts\// { name = $0; sub(/.* === /, "", name); sub(/:.*/, "", name)
         inb = 1; n = 0; last = ""; next }
       / === [a-z-]+: exit / { if (inb && (n != 1 || last !~ /^  \| RESULT /)) print name; inb = 0; next }
       inb && /^  \| / { last = $0; if ($0 ~ /^  \| RESULT /) n++ }' "$1"
}
# field LINE KEY
field() {
  local line=$1 key=$2
  if [[ "${key}" == note ]]; then
    printf '%s\n' "${line#* note=}"
  elif [[ " ${line%% note=*} " =~ \ ${key}=([^ ]*)\  ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  fi
}

test_help_and_usage() {
  local s out rc
  for s in "${SCRIPTS[@]}"; do
    rc=0
    out=$(bash "${ROOT}/scripts/${s}.sh" --help 2>&1) || rc=$?
    check "${s}.sh --help exits 0 and shows the usage" \
      test "${rc}" -eq 0 -a -n "$(grep -F 'Usage:' <<<"${out}")"
    rc=0
    out=$(bash "${ROOT}/scripts/${s}.sh" --bogus 2>&1) || rc=$?
    check "${s}.sh --bogus exits 2 with an error naming it" \
      test "${rc}" -eq 2 -a -n "$(grep -F -- '--bogus' <<<"${out}")"
    rc=0
    bash "${ROOT}/scripts/${s}.sh" --context foo >/dev/null 2>&1 || rc=$?
    check "${s}.sh --context without --kube exits 2" test "${rc}" -eq 2
  done
}

# no_cluster NAME [VAR=VALUE...] — scripts/no-arg.sh --kube in that environment must exit 2
# within 10 s, printing exactly one line.
no_cluster() {
  local what=$1
  shift
  local start rc=0 out lines elapsed
  start=$(date +%s)
  out=$(env "$@" timeout 30 bash "${ROOT}/scripts/no-arg.sh" --kube 2>&1) || rc=$?
  elapsed=$(($(date +%s) - start))
  lines=$(grep -c . <<<"${out}" || true)
  if [[ "${rc}" == 2 && "${elapsed}" -le 10 && "${lines}" == 1 ]]; then
    ok "no cluster (${what}): exit 2 after ${elapsed}s with one line: ${out}"
  else
    not_ok "no cluster (${what}): expected exit 2 within 10s and one line, got exit ${rc} after ${elapsed}s, ${lines} lines: ${out}"
  fi
}

test_no_cluster() {
  printf '#!/bin/sh\necho "error: the server is on holiday" >&2\nexit 1\n' >"${WORK}/failing-kubectl"
  chmod +x "${WORK}/failing-kubectl"
  no_cluster "KUBECTL is a command that fails" KUBECTL="${WORK}/failing-kubectl"
  no_cluster "KUBECTL is not installed" KUBECTL="${WORK}/no-such-kubectl"
  if command -v kubectl >/dev/null 2>&1; then
    no_cluster "kubeconfig with server https://127.0.0.1:1" \
      KUBECONFIG="${ROOT}/tests/fixtures/kubeconfig-unreachable.yaml"
  else
    printf '# kubectl is not installed: the unreachable-server check runs with the stubs only\n'
  fi
}

# wait_for with a command that takes 6 s per round: its "still waiting" lines must still
# come every 5 s (5 s, 10 s), and it gives up after its timeout.
test_wait_progress() {
  local out="${WORK}/wait.out" rc=0 start elapsed
  start=$(date +%s)
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 60 bash -c 'set -o errexit -o nounset -o pipefail
    source "$1/scripts/lib/common.sh"
    WORK_DIR=$2
    slow() { sleep 6; return 1; }
    wait_for "a slow check" 11 0.1 slow' _ "${ROOT}" "${WORK}" >"${out}" 2>&1 || rc=$?
  elapsed=$(($(date +%s) - start))
  check "wait_for: 'still waiting ... 5s' and '10s' although each round takes 6 s" \
    test -n "$(grep -F 'still waiting for a slow check: 5s elapsed' "${out}")" -a \
    -n "$(grep -F 'still waiting for a slow check: 10s elapsed' "${out}")"
  check "wait_for: gives up after its timeout (exit ${rc} after ${elapsed}s), no other progress line" \
    test "${rc}" -eq 1 -a "${elapsed}" -ge 11 -a "${elapsed}" -le 20 -a \
    -z "$(grep -F 'still waiting' "${out}" | grep -vE ': (5|10)s elapsed$')"
}

test_local_walkthrough() {
  local out="${WORK}/local.out" rc=0 line start
  start=$(date +%s)
  timeout 300 bash "${ROOT}/scripts/walkthrough.sh" >"${out}" 2>&1 </dev/null || rc=$?
  printf '# local walkthrough: exit %s after %ss; its table:\n' "${rc}" $(($(date +%s) - start))
  sed -n '/^hello-path-rs walkthrough/,$p' "${out}" | sed 's/^/#   /'
  check "local walkthrough exits 0" test "${rc}" -eq 0
  check "local walkthrough prints the table header" grep -qE '^scenario +\| failed during the change' "${out}"
  check "local walkthrough prints the timeline legend" grep -qF 'availability per second (█ every request ok' "${out}"

  line=$(result_of "${out}" reload)
  local pid
  pid=$(sed -n 's/.*started reload: PID \([0-9]*\):.*/\1/p' "${out}" | head -n 1)
  check "reload: 0 failed requests (${line:-no RESULT})" test "$(field "${line}" failed)" = 0
  check "reload: 0 restarts, same PID ${pid:-?} at the end" \
    test "$(field "${line}" restarts)" = 0 -a -n "${pid}" -a "$(field "${line}" pids)" = "${pid}"
  check "reload: served after the fix (seconds_to_new is a number)" \
    grep -qE '^[0-9]+\.[0-9]+$' <<<"$(field "${line}" seconds_to_new)"
  check "reload: verdict ok" test "$(field "${line}" verdict)" = ok

  line=$(result_of "${out}" rotate)
  pid=$(sed -n 's/.*started rotate: PID \([0-9]*\):.*/\1/p' "${out}" | head -n 1)
  check "rotate: 0 failed requests (${line:-no RESULT})" test "$(field "${line}" failed)" = 0
  check "rotate: 0 restarts, same PID ${pid:-?}" \
    test "$(field "${line}" restarts)" = 0 -a -n "${pid}" -a "$(field "${line}" pids)" = "${pid}"
  check "rotate: the bad value rejected (secret rejected, last_reload_successful 0)" \
    grep -qF 'hello_path_secret_last_reload_successful 0' "${out}"
  check "rotate: verdict ok" test "$(field "${line}" verdict)" = ok

  line=$(result_of "${out}" redeploy)
  check "redeploy: a measured outage, failed > 0 (${line:-no RESULT})" \
    test "$(field "${line}" failed)" -gt 0 2>/dev/null
  check "redeploy: verdict ok" test "$(field "${line}" verdict)" = ok
  check "redeploy: 2 processes started anew (the crashing and the fixed one)" \
    test "$(field "${line}" restarts)" = 2
  line=$(result_of "${out}" restart)
  check "restart: locally an outage too, and said so (${line:-no RESULT})" \
    test "$(field "${line}" failed)" -gt 0 -a -n "$(grep -F 'no rolling update without a cluster' <<<"${line}")"
  check "restart: 2 processes started anew (the crashing and the fixed one)" \
    test "$(field "${line}" restarts)" = 2

  local c
  for c in reload-env reload-subpath; do
    line=$(result_of "${out}" "${c}" CONTROL)
    check "${c}: the negative control never sees the new value (${line:-no CONTROL line})" \
      test "$(field "${line}" seconds_to_new)" = never -a "$(field "${line}" verdict)" = ok -a \
      "$(field "${line}" failed)" = "$(field "${line}" total)"
    check "${c}: a CONTROL row in the table" grep -qE "^${c} +\| all [0-9]+ \(never served\)" "${out}"
  done

  line=$(result_of "${out}" no-arg)
  check "no-arg: exits with the FATAL line, never serves" \
    test -n "$(grep -F 'FATAL: connection to remote service failed. Check mysecret parameter.' "${out}")" -a \
    "$(field "${line}" verdict)" = ok
  line=$(result_of "${out}" arg)
  check "arg: serves every request and shows the exposure" \
    test "$(field "${line}" failed)" = 0 -a "$(field "${line}" total)" -gt 0 -a "$(field "${line}" verdict)" = ok
  check "6 RESULT lines (one per scenario) and 2 CONTROL lines (reload's)" \
    test "$(grep -c '^  | RESULT ' "${out}")" -eq 6 -a "$(grep -c '^  | CONTROL ' "${out}")" -eq 2
  local bad
  bad=$(bad_blocks "${out}" | paste -sd' ' -)
  check "every scenario printed exactly one RESULT line, as its last line${bad:+ (not: ${bad})}" \
    test -z "${bad}" -a "$(grep -c ' === [a-z-]*: exit ' "${out}")" -eq 6
}

test_kube_dry() {
  mkdir -p "${WORK}/state"
  local out="${WORK}/kube.out" rc=0 start
  start=$(date +%s)
  # KUBECTL with a space in it, as "k3s kubectl" has.
  STUB_STATE="${WORK}/state" KUBECTL="bash ${FAKE_KUBECTL}" STALL_SECONDS=2 CONTROL_SECONDS=2 \
    timeout 240 bash "${ROOT}/scripts/walkthrough.sh" --kube --context dry-ctx --quiet \
    >"${out}" 2>&1 </dev/null || rc=$?
  printf '# dry --kube walkthrough (fake kubectl): exit %s after %ss\n' "${rc}" $(($(date +%s) - start))
  check "dry --kube walkthrough exits 0, every verdict ok" test "${rc}" -eq 0
  if ((rc != 0)); then
    sed 's/^/#   /' "${out}" | tail -n 40
  fi
  local argv="${WORK}/state/argv.log"
  check "dry --kube: every kubectl call carries --context dry-ctx" \
    test "$(grep -vc -- '--context dry-ctx' "${argv}")" -eq 0
  check "dry --kube: no flag newer than Kubernetes 1.15 (--dry-run, wait --for=jsonpath, events)" \
    test -z "$(grep -E -- '--dry-run|--for=jsonpath| events( |$)' "${argv}")"
  check "dry --kube: the Secret is changed with kubectl patch --type merge (stringData)" \
    grep -qE 'patch secret hello-path-secret --type merge -p \{"stringData"' "${argv}"
  check "dry --kube: restart uses kubectl rollout restart, redeploy delete + apply" \
    test -n "$(grep -F 'rollout restart deployment/hello-path' "${argv}")" -a \
    -n "$(grep -F 'delete deployment hello-path' "${argv}")"
  check "dry --kube: redeploy deletes with --wait=false, then polls until the Deployment is gone" \
    test -z "$(grep -F 'delete deployment hello-path' "${argv}" | grep -vF -- '--wait=false')" -a \
    -n "$(grep -F 'get deployment hello-path --ignore-not-found -o name' "${argv}")"
  check "dry --kube: every poll is bounded (get pods, logs of the probe, get --raw, rollout status: --request-timeout)" \
    test -z "$(grep -E ' get pods | logs probe-| get --raw /api/| rollout status ' "${argv}" | grep -vF -- '--request-timeout=')" -a \
    -n "$(grep -F ' get pods ' "${argv}")"
  check "dry --kube: per-pod checks through the API server's pod proxy" \
    grep -qE 'get --raw /api/v1/namespaces/[^/]+/pods/[^/]+:8080/proxy/mysecret' "${argv}"
  local created deleted
  created=$(sed -n 's/.*create namespace \(hello-path-[a-z0-9-]*\).*/\1/p' "${argv}" | sort)
  deleted=$(sort "${WORK}/state/deleted-namespaces" 2>/dev/null || true)
  check "dry --kube: every namespace created ($(wc -l <<<"${created}")) was deleted" \
    test -n "${created}" -a "${created}" = "${deleted}"
  check "dry --kube: namespace deletion does not wait (--wait=false)" \
    test -z "$(grep -F 'delete namespace' "${argv}" | grep -vF -- '--wait=false')"
  check "dry --kube: the probe pods target the Service's ClusterIP (no DNS needed)" \
    grep -qF 'get svc hello-path -o jsonpath={.spec.clusterIP}' "${argv}"

  # A wrong outcome must fail: pods that never reject the bad Secret.
  rc=0
  STUB_STATE="${WORK}/state" STUB_BROKEN=1 KUBECTL="bash ${FAKE_KUBECTL}" SECRET_TIMEOUT=3 \
    timeout 120 bash "${ROOT}/scripts/rotate.sh" --kube --context dry-ctx >"${WORK}/broken.out" 2>&1 </dev/null || rc=$?
  check "dry --kube: a wrong outcome exits 1 with verdict=unexpected" \
    test "${rc}" -eq 1 -a -n "$(grep -F 'verdict=unexpected' "${WORK}/broken.out")"
  check "dry --kube: the RESULT line is the last line on stdout" \
    test "$(STUB_STATE="${WORK}/state" KUBECTL="bash ${FAKE_KUBECTL}" timeout 60 \
      bash "${ROOT}/scripts/arg.sh" --kube --context dry-ctx 2>/dev/null </dev/null | tail -n 1 | cut -c1-22)" = \
    'RESULT scenario=arg mo'
  rc=0
  STUB_STATE="${WORK}/state" KUBECTL="bash ${FAKE_KUBECTL}" CONTROL_SECONDS=2 timeout 120 \
    bash "${ROOT}/scripts/reload.sh" --kube --context dry-ctx 2>/dev/null </dev/null >"${WORK}/reload-kube.out" || rc=$?
  check "dry --kube: reload.sh exits ${rc}, its stdout: 2 CONTROL lines, one RESULT line, the last" \
    test "${rc}" -eq 0 -a "$(grep -c '^RESULT ' "${WORK}/reload-kube.out")" -eq 1 -a \
    "$(grep -c '^CONTROL scenario=reload-' "${WORK}/reload-kube.out")" -eq 2 -a \
    "$(tail -n 1 "${WORK}/reload-kube.out" | cut -c1-23)" = 'RESULT scenario=reload '
}

main() {
  (($# == 0)) || {
    printf 'usage: tests/walkthrough.sh (no arguments)\n' >&2
    exit 2
  }
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/hello-path-test-walkthrough.XXXXXX")
  trap cleanup EXIT
  test_help_and_usage
  test_no_cluster
  test_wait_progress
  test_local_walkthrough
  test_kube_dry
  tap_summary
}

main "$@"
