#!/usr/bin/env bash
# nudge-answers.sh — records what the real kubectl prints for the calls scripts/nudge.sh
# makes on our own overlays, for the fake kubectl of the dry --kube walkthrough
# (tests/fixtures/fake-kubectl), which cannot evaluate a go-template itself: it answers
# nudge.sh's calls with these recordings, and refuses a call it has no recording for.
#
# For each overlay whose pods use the Secret (volume-reload, rotate, env-reload, subpath),
# k8s/rendered/OVERLAY.yaml becomes what its Deployment runs (tests/lib/fake_apiserver.py
# from-manifests), renamed as the fake kubectl names them: 2 Running pods hello-path-a and
# hello-path-b of ReplicaSet hello-path-5c8d7f9b6, in namespace ns-under-test. The fake API
# server serves them, and scripts/nudge.sh hello-path-secret runs twice through the real
# kubectl: once, then again after a change of the Secret (a new resourceVersion), when the
# pods it nudged carry the first run's annotation. Each call is recorded as
#     > ARGS               its arguments, without --context, --request-timeout and -n NS
#                          (the fake kubectl reads those itself), joined by spaces
#     OUTPUT               what kubectl printed on stdout, verbatim, then
#     \ No newline at end  when that did not end with a newline
# from the second run, with the namespace written @NS@, the Secret's current
# resourceVersion @RV@ and the first one, the value of the pods' annotation, @ANNOTATION@.
# The first run must be the same with @ANNOTATION@ empty (the pods before their first
# nudge), so that one recording serves both.
#
# Usage: tests/lib/nudge-answers.sh [--check] [-h|--help]
#   --check   record into a scratch directory and compare with tests/fixtures/nudge-answers/;
#             exit 1 and name each file that differs (tests/nudge.sh runs this)
# Without --check, writes tests/fixtures/nudge-answers/OVERLAY.txt.
# Needs kubectl (the client only) and python3.
# Environment: KUBECTL, the kubectl client (default: kubectl; no spaces).
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
readonly ROOT
readonly FAKE="${ROOT}/tests/lib/fake_apiserver.py"
readonly OUT_DIR="${ROOT}/tests/fixtures/nudge-answers"
readonly CLIENT=${KUBECTL:-kubectl}
readonly OVERLAYS=(volume-reload rotate env-reload subpath)
readonly NAMESPACE=ns-under-test
readonly SECRET=hello-path-secret
readonly REPLICASET=hello-path-5c8d7f9b6
readonly PODS=(hello-path-a hello-path-b)
WORK=""
SERVER_PID=""
PORT=""

usage() { sed -n '2,/^set -o/{/^set -o/d;s/^# \{0,1\}//;p}' "$0"; }
die() {
  printf 'nudge-answers.sh: error: %s\n' "$*" >&2
  exit 1
}
cleanup() {
  server_stop
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then
    rm -rf -- "${WORK}"
  fi
}

# server_start FIXTURE_DIR — a fake API server serving FIXTURE_DIR; sets PORT and writes
# WORK/kubeconfig for it (context fake). At most 10 s for it to listen.
server_start() {
  server_stop
  rm -f "${WORK}/port"
  python3 "${FAKE}" serve --fixtures "$1" --port-file "${WORK}/port" --log "${WORK}/requests.log" \
    >"${WORK}/server.err" 2>&1 &
  SERVER_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ ! -s "${WORK}/port" ]] || break
    kill -0 "${SERVER_PID}" 2>/dev/null || break
    sleep 0.1
  done
  [[ -s "${WORK}/port" ]] || die "the fake API server did not start within 10s: $(tail -n 1 "${WORK}/server.err")"
  PORT=$(cat "${WORK}/port")
  sed "s/@PORT@/${PORT}/" "${ROOT}/tests/fixtures/nudge/kubeconfig.in" >"${WORK}/kubeconfig"
}
server_stop() {
  if [[ -n "${SERVER_PID}" ]]; then
    kill "${SERVER_PID}" 2>/dev/null || true
    wait "${SERVER_PID}" 2>/dev/null || true
    SERVER_PID=""
  fi
}

# fixtures OVERLAY DIR — the objects of k8s/rendered/OVERLAY.yaml's Deployment, as its
# controllers would run them, renamed (see the header), into DIR.
fixtures() {
  local overlay=$1 dir=$2
  "${CLIENT}" --kubeconfig "${WORK}/kubeconfig" --context fake --cache-dir "${WORK}/cache" \
    create --dry-run=client --validate=false -o json -f "${ROOT}/k8s/rendered/${overlay}.yaml" \
    >"${WORK}/${overlay}.json"
  python3 "${FAKE}" from-manifests "${WORK}/${overlay}.json" "${dir}"
  python3 - "${dir}" "${NAMESPACE}" "${REPLICASET}" "${PODS[@]}" <<'EOF'
import json, os, sys

d, namespace, replicaset, pod_names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
lists = {}
for name in ("pods", "replicasets", "secrets"):
    with open(os.path.join(d, name + ".json"), encoding="utf-8") as f:
        lists[name] = json.load(f)
pods, replicasets = lists["pods"]["items"], lists["replicasets"]["items"]
if len(replicasets) != 1 or len(pods) != len(pod_names):
    sys.exit(f"expected 1 ReplicaSet and {len(pod_names)} pods, got {len(replicasets)} and {len(pods)}")
replicasets[0]["metadata"]["name"] = replicaset
for pod, name in zip(sorted(pods, key=lambda p: p["metadata"]["name"]), pod_names):
    pod["metadata"]["name"] = name
    for ref in pod["metadata"].get("ownerReferences", []):
        if ref["kind"] == "ReplicaSet":
            ref["name"] = replicaset
for items in lists.values():
    for item in items["items"]:
        item["metadata"]["namespace"] = namespace
for name, value in lists.items():
    with open(os.path.join(d, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
EOF
}

# record_run TRANSCRIPT — scripts/nudge.sh through a KUBECTL that runs the real kubectl
# and appends each call and its output to TRANSCRIPT.
record_run() {
  : >"$1"
  local rc=0
  TRANSCRIPT=$1 REAL_KUBECTL="${CLIENT} --kubeconfig ${WORK}/kubeconfig --cache-dir ${WORK}/cache" \
    KUBECTL="bash ${WORK}/recording-kubectl" \
    timeout 120 bash "${ROOT}/scripts/nudge.sh" "${SECRET}" -n "${NAMESPACE}" --context fake \
    >"$1.out" 2>"$1.err" || rc=$?
  ((rc == 0)) || die "scripts/nudge.sh exited ${rc} while recording: $(cat "$1.err")"
}

# secret_rv — the Secret's resourceVersion on the fake API server now.
secret_rv() {
  "${CLIENT}" --kubeconfig "${WORK}/kubeconfig" --context fake --cache-dir "${WORK}/cache" \
    get secret "${SECRET}" -n "${NAMESPACE}" -o 'jsonpath={.metadata.resourceVersion}'
}

# record OVERLAY FILE — the recording of OVERLAY (see the header) into FILE.
record() {
  local overlay=$1 file=$2 dir="${WORK}/fixtures-$1" rv1 rv2
  fixtures "${overlay}" "${dir}"
  server_start "${dir}"
  rv1=$(secret_rv)
  record_run "${WORK}/${overlay}.1"
  python3 "${FAKE}" ctl "${WORK}/port" bump-secret "${NAMESPACE}" "${SECRET}" >/dev/null
  rv2=$(secret_rv)
  record_run "${WORK}/${overlay}.2"
  [[ "${rv1}" =~ ^[0-9]+$ && "${rv2}" =~ ^[0-9]+$ && "${rv1}" != "${rv2}" ]] ||
    die "${overlay}: unexpected resourceVersions '${rv1}' and '${rv2}'"
  sed -e "s/\\b${NAMESPACE}\\b/@NS@/g" -e "s/\\b${rv1}\\b/@RV@/g" "${WORK}/${overlay}.1" >"${WORK}/${overlay}.1.n"
  sed -e "s/\\b${NAMESPACE}\\b/@NS@/g" -e "s/\\b${rv2}\\b/@RV@/g" -e "s/\\b${rv1}\\b/@ANNOTATION@/g" \
    "${WORK}/${overlay}.2" >"${WORK}/${overlay}.2.n"
  if ! diff -u "${WORK}/${overlay}.1.n" <(sed 's/@ANNOTATION@//g' "${WORK}/${overlay}.2.n") >"${WORK}/${overlay}.diff"; then
    cat "${WORK}/${overlay}.diff" >&2
    die "${overlay}: the answers before the first nudge are not those after it without the annotation's value"
  fi
  {
    printf '# What kubectl printed for the calls of scripts/nudge.sh %s -n @NS@ over the pods of\n' "${SECRET}"
    printf '# k8s/rendered/%s.yaml; recorded by tests/lib/nudge-answers.sh (see there) against\n' "${overlay}"
    printf '# tests/lib/fake_apiserver.py, for tests/fixtures/fake-kubectl. Do not edit: re-record.\n'
    cat "${WORK}/${overlay}.2.n"
  } >"${file}"
}

main() {
  local check=false
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    --check) check=true ;;
    "") ;;
    *) printf 'nudge-answers.sh: error: unknown argument %s\n' "$1" >&2; exit 2 ;;
  esac
  command -v "${CLIENT}" >/dev/null || die "${CLIENT} is needed (KUBECTL)"
  command -v python3 >/dev/null || die "python3 is needed"
  WORK=$(mktemp -d)
  trap cleanup EXIT
  cat >"${WORK}/recording-kubectl" <<'EOF'
# KUBECTL of scripts/nudge.sh while recording: the real kubectl ($REAL_KUBECTL), and each
# call appended to $TRANSCRIPT (see tests/lib/nudge-answers.sh).
set -o nounset
key=()
args=("$@")
while (($#)); do
  case "$1" in
    --context | -n | --namespace) shift 2 ;;
    --request-timeout=*) shift ;;
    *) key+=("$1"); shift ;;
  esac
done
read -r -a real <<<"${REAL_KUBECTL}"
rc=0
"${real[@]}" "${args[@]}" >"${TRANSCRIPT}.call" || rc=$?
printf '> %s\n' "${key[*]}" >>"${TRANSCRIPT}"
cat "${TRANSCRIPT}.call" >>"${TRANSCRIPT}"
if [[ -s "${TRANSCRIPT}.call" && "$(tail -c 1 "${TRANSCRIPT}.call" | od -An -c | tr -d ' ')" != '\n' ]]; then
  printf '\n\\ No newline at end\n' >>"${TRANSCRIPT}"
fi
cat "${TRANSCRIPT}.call"
exit "${rc}"
EOF
  # A server with nothing in it, for kubectl to read the rendered manifests (it needs the
  # API's discovery for that).
  mkdir -p "${WORK}/empty"
  server_start "${WORK}/empty"
  mkdir -p "${WORK}/out"
  local overlay stale=0
  for overlay in "${OVERLAYS[@]}"; do
    record "${overlay}" "${WORK}/out/${overlay}.txt"
    if [[ "${check}" == true ]]; then
      if ! diff -u "${OUT_DIR}/${overlay}.txt" "${WORK}/out/${overlay}.txt" >"${WORK}/diff" 2>&1; then
        printf 'stale: tests/fixtures/nudge-answers/%s.txt (re-record: tests/lib/nudge-answers.sh)\n' "${overlay}"
        sed 's/^/    /' "${WORK}/diff"
        stale=1
      fi
    else
      mkdir -p "${OUT_DIR}"
      cp "${WORK}/out/${overlay}.txt" "${OUT_DIR}/${overlay}.txt"
      printf 'wrote tests/fixtures/nudge-answers/%s.txt\n' "${overlay}"
    fi
  done
  return "${stale}"
}

main "$@"
