#!/usr/bin/env bash
# walkthrough.sh — end-to-end checks of the scenario scripts (scripts/*.sh).
#
#   1. every scenario script: --help exits 0, a bad option exits 2, --context without --kube
#      exits 2; reload.sh and rotate.sh --nudge or --nudger without --kube exit 2 naming
#      the reason, and both together exit 2;
#   2. --kube without a cluster exits 2 within seconds with one line: with KUBECTL pointing at
#      a command that fails, at a missing command, and (when kubectl is installed) with a
#      kubeconfig whose server is https://127.0.0.1:1;
#   3. wait_for (scripts/lib/wait.sh) says what it waits for every 5 s even when one round of its
#      command takes longer than that, and 2000 waits whose command holds at once all return;
#   4. the LOCAL walkthrough end to end (scripts/walkthrough.sh, which builds the binary if
#      needed): reload and rotate with 0 failed requests and 0 restarts on the same PID,
#      redeploy and restart with a measured outage and 2 processes started anew, the
#      negative controls (CONTROL lines) never served, no-arg with the FATAL line, arg
#      served, every scenario with exactly one RESULT line as its last line, the table and
#      its legend printed, which says why there are no nudged rows locally;
#   5. a DRY --kube walkthrough against a fake kubectl (tests/fixtures/fake-kubectl) that
#      logs its argv and models each scenario: every scenario ok, every kubectl call with
#      --context, none of the flags too new for Kubernetes 1.15, every poll bounded
#      (--request-timeout), every namespace deleted; reload.sh --kube ends its stdout with
#      its one RESULT line after the CONTROL lines; and a wrong outcome (pods that never
#      reject a bad Secret) exits 1;
#   6. the nudged runs in that dry walkthrough and on their own (reload.sh and rotate.sh
#      --kube --nudge): the plain and the nudged rows side by side, each nudged scenario
#      ending with its RESULT (CONTROL) line, verdict ok; the real scripts/nudge.sh called
#      through KUBECTL with the Secret, the scenario's namespace and --context, after every
#      change of the Secret; the pods of the volume cases annotated, those of the controls
#      not (nudge.sh reports them as consumers it cannot help) and the controls never Ready;
#      the nudged waits configured to poll every 0.2 s; every namespace deleted; pods that
#      never get the file after the nudge exit 1; a call of nudge.sh the fake has no
#      recording for fails. In the fake's cluster the kubelet delivers a changed Secret
#      only after a nudge, so a nudged row is ok only if the nudge worked.
#   7. the runs with the controller (reload.sh and rotate.sh --kube --nudger): k8s/nudger
#      applied into the scenario's namespace with its RoleBinding's subject there, then
#      only `kubectl patch`; the nudger's log says it annotated both pods of the volume
#      cases and names the controls' pods as consumers it cannot help; verdict ok; a
#      nudger that never nudges makes the row unexpected;
#   8. reload.sh --kube whose probe through the Service loses requests (the fake's
#      STUB_NETWORK): connect timeouts that the witness (the pods asked directly) never saw
#      are `ok-network`, named as the network's with the k3s explanation, and exit 0, in the
#      walkthrough too, whose legend explains the verdict; the same timeouts seen by the
#      witness too, or resets, stay `unexpected` (exit 1); the RESULT line carries the
#      failures by kind, and no output says `served=`; pods that cannot get their image
#      stop a scenario with the cure (scripts/load-image.sh).
#      The fake cannot evaluate nudge.sh's go-templates: it answers nudge.sh's calls with
#      what the real kubectl printed for them (tests/fixtures/nudge-answers/, recorded by
#      tests/lib/nudge-answers.sh). scripts/nudge.sh itself — every kind of consumer,
#      refusals, exit codes — is covered by tests/nudge.sh, with the real kubectl against a
#      fake API server; that test also checks that these recordings are current.
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
RC=0
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
  for s in reload rotate; do
    rc=0
    out=$(bash "${ROOT}/scripts/${s}.sh" --nudge 2>&1) || rc=$?
    check "${s}.sh --nudge without --kube exits 2: $(head -n 1 <<<"${out}")" \
      test "${rc}" -eq 2 -a "$(head -n 1 <<<"${out}")" = \
      "${s}: error: --nudge needs --kube: locally the kubelet-style update is written at once"
    rc=0
    out=$(bash "${ROOT}/scripts/${s}.sh" --nudger 2>&1) || rc=$?
    check "${s}.sh --nudger without --kube exits 2: $(head -n 1 <<<"${out}")" \
      test "${rc}" -eq 2 -a "$(head -n 1 <<<"${out}")" = \
      "${s}: error: --nudger needs --kube: locally the kubelet-style update is written at once"
    rc=0
    out=$(bash "${ROOT}/scripts/${s}.sh" --kube --nudge --nudger 2>&1) || rc=$?
    check "${s}.sh --nudge --nudger exits 2: $(head -n 1 <<<"${out}")" \
      test "${rc}" -eq 2 -a -n "$(grep -F 'pick one' <<<"${out}")"
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

  # A wait whose command holds at once stops its ticker as soon as it started it. With the
  # scenario's traps set (setup_workdir), a SIGTERM could get lost there and that wait_for
  # never return (it hung within 30 to 1500 rounds). 2000 of them must all return.
  rc=0
  # shellcheck disable=SC2016 # expanded by the inner bash
  TMPDIR=${WORK} timeout 120 bash -c 'set -o errexit -o nounset -o pipefail
    source "$1/scripts/lib/common.sh"
    setup_workdir
    for ((i = 0; i < 2000; i++)); do wait_for "nothing" 5 0.1 true; done
    echo "2000 returned"' _ "${ROOT}" >"${out}" 2>&1 || rc=$?
  check "wait_for: 2000 waits whose command holds at once all return, each stopping its ticker (exit ${rc})" \
    test "${rc}" -eq 0 -a "$(tail -n 1 "${out}")" = "2000 returned"
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
  check "local walkthrough: no nudged row, and the table's notes say why" \
    test -z "$(grep -E '^[a-z-]+-nudge +\|' "${out}")" -a \
    -n "$(grep -F 'reload-nudge, reload-nudger, rotate-nudge, rotate-nudger: --kube only. Locally the kubelet-style' "${out}")"

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

  # The nudged rows, beside the plain ones.
  local rows want="no-arg arg redeploy restart reload-env reload-subpath reload reload-env-nudge reload-subpath-nudge reload-nudge reload-env-nudger reload-subpath-nudger reload-nudger rotate rotate-nudge rotate-nudger"
  rows=$(awk -F' *[|] ' '/^[a-z-]+ +[|] / && $1 != "scenario" { print $1 }' "${out}" | paste -sd' ' -)
  check "dry --kube: the table has the plain and the nudged rows side by side (${rows})" test "${rows}" = "${want}"
  local r
  for r in reload-env-nudge reload-subpath-nudge reload-nudge rotate-nudge reload-env-nudger reload-subpath-nudger reload-nudger rotate-nudger; do
    check "dry --kube: row ${r}, verdict ok" grep -qE "^${r} +[|] .*[|] ok: " "${out}"
  done
  check "dry --kube: the notes under the table explain the -nudge rows" \
    grep -qF -- '-nudge rows: after each kubectl patch of the Secret, scripts/nudge.sh annotated the pods' "${out}"
  check "dry --kube: ... and the -nudger rows" \
    grep -qF -- '-nudger rows: the controller (k8s/nudger) ran in the namespace and annotated the pods itself' "${out}"
  nudge_calls "${argv}" "${created}"

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

# nudge_calls ARGV_LOG NAMESPACES — the calls scripts/nudge.sh made through the fake
# KUBECTL in each nudged namespace (hello-path-*-nudge-*) of NAMESPACES, checked: the Secret
# read with --context dry-ctx after every change of it, the pods of the volume cases (reload,
# rotate) annotated each time, those of the controls never.
nudge_calls() {
  local argv=$1 ns kind seq want
  local -a namespaces
  mapfile -t namespaces < <(grep -- '-nudge-' <<<"$2")
  check "dry --kube: nudge.sh never runs where the nudger does" \
    test -z "$(grep -E -- '-n hello-path-[a-z-]+-nudger-' "${argv}" | grep -E 'get secret hello-path-secret -n [^ ]+ -o go-template=|patch pods ')"
  check "dry --kube: 4 namespaces nudged by nudge.sh (reload's 3, rotate's 1): ${namespaces[*]}" test "${#namespaces[@]}" -eq 4
  for ns in "${namespaces[@]}"; do
    kind=${ns#hello-path-}
    kind=${kind%-nudge-*}
    # Each change of the Secret (S), and what nudge.sh did after it: read the Secret (G),
    # annotate the pods (P).
    seq=$(grep -F -- "-n ${ns} " "${argv}" | awk '
      / patch secret hello-path-secret / { printf "S" }
      /--context dry-ctx get secret hello-path-secret -n [^ ]+ -o go-template=/ { printf "G" }
      /--context dry-ctx patch pods hello-path-a hello-path-b -n [^ ]+ --type merge -p [{]"metadata":[{]"annotations":[{]"secret.nudge.hello-path-rs\/hello-path-secret":/ { printf "P" }
      END { print "" }')
    case "${kind}" in
      reload) want=SSGP ;;             # the first value (1234) as deployed, then the fix
      rotate) want=SGPSGP ;;           # the rotation and the bad value, each nudged
      reload-env | reload-subpath) want=SSG ;; # nudge.sh reads, and cannot help: no patch
    esac
    check "dry --kube: ${kind} --nudge: nudge.sh, through KUBECTL with --context dry-ctx and -n ${ns}, after each change of the Secret (${seq}, want ${want})" \
      test "${seq}" = "${want}"
  done
}

# run_dry NAME ENV... -- SCRIPT ARG... — SCRIPT --kube --context dry-ctx ARG... against the
# fake kubectl (state WORK/nudge-state), stdout to WORK/NAME.out, stderr to WORK/NAME.err;
# sets RC.
run_dry() {
  local name=$1
  shift
  local -a envs=()
  while (($#)) && [[ "$1" != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  mkdir -p "${WORK}/nudge-state"
  RC=0
  env STUB_STATE="${WORK}/nudge-state" KUBECTL="bash ${FAKE_KUBECTL}" CONTROL_SECONDS=2 "${envs[@]}" \
    timeout 120 bash "${ROOT}/scripts/$1.sh" --kube --context dry-ctx "${@:2}" \
    >"${WORK}/${name}.out" 2>"${WORK}/${name}.err" </dev/null || RC=$?
}

test_kube_nudged() {
  local out line c why
  run_dry reload-nudge -- reload --nudge
  out="${WORK}/reload-nudge.out"
  check "reload.sh --kube --nudge exits ${RC}; stdout: 2 CONTROL lines, then its one RESULT line, the last" \
    test "${RC}" -eq 0 -a "$(grep -c '^CONTROL scenario=reload-[a-z]*-nudge ' "${out}")" -eq 2 -a \
    "$(grep -c '^RESULT ' "${out}")" -eq 1 -a "$(tail -n 1 "${out}" | cut -c1-29)" = 'RESULT scenario=reload-nudge '
  line=$(result_of "${out}" reload-nudge)
  check "reload-nudge: 0 failed, 0 restarts, Ready after a number of seconds, both pods nudged, verdict ok (${line:-no RESULT})" \
    test "$(field "${line}" failed)" = 0 -a "$(field "${line}" restarts)" = 0 -a \
    "$(field "${line}" verdict)" = ok -a -n "$(grep -E '^[0-9]+[.][0-9]+$' <<<"$(field "${line}" seconds_to_new)")" -a \
    -n "$(grep -F '2 of 2 pods nudged' <<<"${line}")"
  for c in env subpath; do
    why="env MYSECRET in container hello-path"
    [[ "${c}" == env ]] || why="subPath mount of volume secret in container hello-path"
    line=$(result_of "${out}" "reload-${c}-nudge" CONTROL)
    check "reload-${c}-nudge: never sees the new value, and nudge.sh says it cannot help (${line:-no CONTROL line})" \
      test "$(field "${line}" seconds_to_new)" = never -a "$(field "${line}" verdict)" = ok -a \
      "$(field "${line}" failed)" = "$(field "${line}" total)" -a \
      -n "$(grep -F "nudge.sh cannot help it (2 of 2 pods: ${why})" <<<"${line}")"
  done
  check "reload-nudge: its timed wait polls every 0.2 s" \
    grep -qE 'waiting for the kubelet to deliver the Secret [(]nudged[)] and the 2 pods of hello-path-reload-nudge-[a-z0-9]+ to become Ready [(]at most [0-9]+s, polling every 0[.]2s[)]$' "${out}"

  run_dry rotate-nudge -- rotate --nudge
  out="${WORK}/rotate-nudge.out"
  line=$(result_of "${out}" rotate-nudge)
  check "rotate.sh --kube --nudge exits ${RC}, its RESULT line last: 0 failed, 0 restarts, verdict ok (${line:-no RESULT})" \
    test "${RC}" -eq 0 -a "$(tail -n 1 "${out}" | cut -c1-29)" = 'RESULT scenario=rotate-nudge ' -a \
    "$(field "${line}" failed)" = 0 -a "$(field "${line}" restarts)" = 0 -a "$(field "${line}" verdict)" = ok
  check "rotate-nudge: the rotation and the bad value (9999 rejected) both nudged, both pods each time" \
    test -n "$(grep -F '2 of 2 pods nudged), then 9999 rejected by every pod' <<<"${line}")" -a \
    "$(grep -c '^    nudge.sh: NUDGE secret=hello-path-secret nudged=2 unchanged=0 cannot_help=0 ' "${out}")" -eq 2
  check "rotate-nudge: both timed waits poll every 0.2 s" \
    test "$(grep -cE '(generation 2|in /metrics[)]) [(]at most [0-9]+s, polling every 0[.]2s[)]$' "${out}")" -eq 2

  local created deleted argv="${WORK}/nudge-state/argv.log"
  created=$(sed -n 's/.*create namespace \(hello-path-[a-z0-9-]*\).*/\1/p' "${argv}" | sort)
  deleted=$(sort "${WORK}/nudge-state/deleted-namespaces" 2>/dev/null || true)
  check "dry --kube --nudge: every namespace created ($(wc -l <<<"${created}")) was deleted" \
    test -n "${created}" -a "${created}" = "${deleted}"

  # Wrong outcomes must fail: pods whose kubelet never delivers, even nudged.
  run_dry rotate-undelivered STUB_NO_DELIVERY=1 NUDGE_TIMEOUT=2 -- rotate --nudge
  line=$(result_of "${WORK}/rotate-undelivered.out" rotate-nudge)
  check "dry --kube --nudge: pods that never get the new file after the nudge: rotate.sh exits ${RC}, verdict unexpected (${line:-no RESULT})" \
    test "${RC}" -eq 1 -a "$(field "${line}" verdict)" = unexpected -a "$(field "${line}" seconds_to_new)" = never
  run_dry reload-undelivered STUB_NO_DELIVERY=1 NUDGE_TIMEOUT=2 -- reload --nudge --no-controls
  line=$(result_of "${WORK}/reload-undelivered.out" reload-nudge)
  check "dry --kube --nudge: ... and reload.sh exits ${RC}, verdict unexpected (${line:-no RESULT})" \
    test "${RC}" -eq 1 -a "$(field "${line}" verdict)" = unexpected -a "$(field "${line}" seconds_to_new)" = never

  # A call of nudge.sh the fake has no recording for (nudge.sh changed, say) is refused.
  local rc=0 err
  err=$(STUB_STATE="${WORK}/nudge-state" bash "${FAKE_KUBECTL}" --context dry-ctx get pods \
    -n hello-path-reload-nudge-zzzzz -o 'go-template={{range .items}}{{.metadata.name}}{{end}}' 2>&1 >/dev/null) || rc=$?
  check "the fake kubectl refuses a call of nudge.sh it has no recording for (exit ${rc}): ${err}" \
    test "${rc}" -eq 1 -a -n "$(grep -F 'no recorded answer' <<<"${err}")"
}

test_kube_network() {
  local line out
  run_dry net-timeouts STUB_NETWORK=timeouts -- reload --no-controls
  out="${WORK}/net-timeouts.out"
  line=$(result_of "${out}" reload)
  check "reload --kube, connect timeouts the pods never saw: exit ${RC}, verdict ok-network, failures by kind (${line:-no RESULT})" \
    test "${RC}" -eq 0 -a "$(field "${line}" verdict)" = ok-network -a \
    "$(field "${line}" failures)" = "connect_timeout:$(field "${line}" failed)" -a "$(field "${line}" failed)" -gt 0
  check "ok-network: the note blames the network in words, with the k3s explanation and how to confirm it" \
    test -n "$(grep -F "the app held, the cluster's network did not" <<<"${line}" | grep -F 'kube-router#1453' | grep -F 'conntrack -L')"
  check "the probe pod has a witness asking each pod directly" \
    grep -qE 'its witness: http://10[.]42[.]0[.]11:8080/test http://10[.]42[.]0[.]12:8080/test' "${WORK}/net-timeouts.out"
  run_dry net-app STUB_NETWORK=app -- reload --no-controls
  line=$(result_of "${WORK}/net-app.out" reload)
  check "... the same timeouts seen by the witness too: exit ${RC}, verdict unexpected, the kinds in words (${line:-no RESULT})" \
    test "${RC}" -eq 1 -a "$(field "${line}" verdict)" = unexpected -a \
    -n "$(grep -E 'requests failed after the service had first answered: [0-9]+ connect timeout' <<<"${line}")"
  run_dry net-reset STUB_NETWORK=reset -- reload --no-controls
  line=$(result_of "${WORK}/net-reset.out" reload)
  check "... resets through the Service: exit ${RC}, verdict unexpected, failures=reset:N (${line:-no RESULT})" \
    test "${RC}" -eq 1 -a "$(field "${line}" verdict)" = unexpected -a \
    "$(field "${line}" failures)" = "reset:$(field "${line}" failed)"
  local rc=0
  STUB_STATE="${WORK}/nudge-state" STUB_NETWORK=timeouts KUBECTL="bash ${FAKE_KUBECTL}" CONTROL_SECONDS=2 \
    timeout 180 bash "${ROOT}/scripts/walkthrough.sh" --kube --context dry-ctx --quiet --only reload \
    >"${WORK}/net-walk.out" 2>&1 </dev/null || rc=$?
  check "walkthrough --kube with an ok-network row exits ${rc} (0), its legend explains ok-network" \
    test "${rc}" -eq 0 -a -n "$(grep -E '^reload +[|] .*[|] ok-network: Ready .*the app held' "${WORK}/net-walk.out")" -a \
    -n "$(grep -F "ok-network = the app held" "${WORK}/net-walk.out")"
  run_dry no-image STUB_NO_IMAGE=1 -- arg
  check "pods that cannot get their image: arg.sh --kube exits ${RC} (1), naming ErrImagePull and scripts/load-image.sh" \
    test "${RC}" -eq 1 -a -n "$(grep -F 'ErrImagePull' "${WORK}/no-image.err" | grep -F 'scripts/load-image.sh')"
  check "no output of these runs says served= (an internal word)" \
    test -z "$(cat "${WORK}"/net-*.out "${WORK}"/net-*.err "${WORK}/kube.out" | grep -F 'served=')"
}

test_kube_nudger() {
  local out line c why state="${WORK}/nudge-state"
  run_dry reload-nudger -- reload --nudger
  out="${WORK}/reload-nudger.out"
  line=$(result_of "${out}" reload-nudger)
  check "reload.sh --kube --nudger exits ${RC}: 0 failed, 0 restarts, both pods annotated by the nudger, verdict ok (${line:-no RESULT})" \
    test "${RC}" -eq 0 -a "$(field "${line}" failed)" = 0 -a "$(field "${line}" restarts)" = 0 -a \
    "$(field "${line}" verdict)" = ok -a -n "$(grep -F 'nudged by the nudger (2 of 2 pods annotated' <<<"${line}")" -a \
    "$(tail -n 1 "${out}" | cut -c1-30)" = 'RESULT scenario=reload-nudger '
  for c in env subpath; do
    why="env MYSECRET in container hello-path"
    [[ "${c}" == env ]] || why="subPath mount of volume secret in container hello-path"
    line=$(result_of "${out}" "reload-${c}-nudger" CONTROL)
    check "reload-${c}-nudger: never sees the new value, and the nudger says it cannot help (${line:-no CONTROL line})" \
      test "$(field "${line}" seconds_to_new)" = never -a "$(field "${line}" verdict)" = ok -a \
      -n "$(grep -F "the nudger cannot help it (2 of 2 pods: ${why})" <<<"${line}")"
  done
  local ns applied
  ns=$(sed -n 's/.*create namespace \(hello-path-reload-nudger-[a-z0-9]*\).*/\1/p' "${state}/argv.log" | tail -n 1)
  applied="${state}/ns-${ns}/nudger.yaml"
  check "reload --nudger: the nudger applied into ${ns:-?} with its RoleBinding's subject there, no other namespace named" \
    test -n "${ns}" -a -n "$(grep -xF "  namespace: ${ns}" "${applied}" 2>/dev/null)" -a \
    -z "$(grep -E '^ *namespace: ' "${applied}" 2>/dev/null | grep -vF "namespace: ${ns}")"
  check "reload --nudger: no nudge.sh in its namespaces; only kubectl patch of the Secret there" \
    test -z "$(grep -F -- "-n ${ns} " "${state}/argv.log" | grep -E 'patch pods|go-template')"

  run_dry rotate-nudger -- rotate --nudger
  line=$(result_of "${WORK}/rotate-nudger.out" rotate-nudger)
  check "rotate.sh --kube --nudger exits ${RC}: 0 failed, 0 restarts, the nudger annotated both pods, verdict ok (${line:-no RESULT})" \
    test "${RC}" -eq 0 -a "$(field "${line}" failed)" = 0 -a "$(field "${line}" restarts)" = 0 -a \
    "$(field "${line}" verdict)" = ok -a -n "$(grep -F '(the nudger annotated 2 of 2 pods)' <<<"${line}")"

  run_dry nudger-down STUB_NUDGER_DOWN=1 NUDGE_TIMEOUT=2 -- rotate --nudger
  line=$(result_of "${WORK}/nudger-down.out" rotate-nudger)
  check "a nudger that never nudges: rotate.sh --nudger exits ${RC}, verdict unexpected (${line:-no RESULT})" \
    test "${RC}" -eq 1 -a "$(field "${line}" verdict)" = unexpected
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
  test_kube_nudged
  test_kube_network
  test_kube_nudger
  tap_summary
}

main "$@"
