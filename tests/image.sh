#!/usr/bin/env bash
# image.sh — build the FROM-scratch images and check them in a real container engine.
#
# Builds both images with scripts/build-image.sh, then runs the service's the way a
# restricted pod runs it (read-only root, no capabilities, no-new-privileges) and checks,
# one line each: its configuration and content, its size, that it serves on a published
# loopback port as uid 65532, the article's no-secret failure, a prompt exit 0 on SIGTERM
# as PID 1, and a hot reload of a kubelet-style Secret directory mounted read-only, without
# a restart. Then the nudger's: its configuration, content and size (2.5 MB), --help and
# --version, and, restricted too, a run against the fake API server of tests/nudger.sh over
# TLS (host network, its kubeconfig mounted read-only): Ready, a change nudged, exit 0 on
# SIGTERM as PID 1.
#
# Usage:
#   bash tests/image.sh [--no-build]
#
#   --no-build   use the existing image instead of running scripts/build-image.sh
#   -h, --help   show this help
#
# Output: TAP-like lines `ok - ...` / `not ok - ...`, then `N passed, M failed`.
# Exit status: 0 all passed, 1 a check failed, 2 bad arguments.
#
# Environment:
#   IMAGE               image reference (default: localhost/hello-path-rs:0.1.0)
#   CONTAINER_ENGINE    engine with podman's CLI (default: podman)
#   PODMAN_GLOBAL_FLAGS global engine flags, e.g. "--runtime runc", and
#   PODMAN_RUN_FLAGS    extra `run` flags, e.g. "--ulimit nofile=1024:1024": overrides of
#                       what is found out by starting the image once (where the engine
#                       cannot set its default rlimits or its OCI runtime fails, this
#                       process's own limits and runc, said in one line:
#                       scripts/lib/engine.sh) (default: found out)
#   IMAGE_MAX_BYTES     size budget (default: 700000, i.e. 700 kB)
#   NUDGER_IMAGE        the nudger's image (default: localhost/hello-path-nudger:0.1.0)
#   NUDGER_IMAGE_MAX_BYTES  its size budget (default: 2500000, i.e. 2.5 MB)
# shellcheck disable=SC2317 # helpers run through `check` and `trap`, which it cannot follow
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
# shellcheck source=scripts/lib/kubelet-secret.sh
. "${ROOT}/scripts/lib/kubelet-secret.sh"
# shellcheck source=tests/lib/tap.sh
. "${ROOT}/tests/lib/tap.sh"
# shellcheck source=tests/lib/fake-api.sh
. "${ROOT}/tests/lib/fake-api.sh"
# The engine and what `run` needs here: engine, engine_detect_run (ENGINE_RUN).
ENGINE=${CONTAINER_ENGINE:-podman}
# shellcheck source=scripts/lib/engine.sh
. "${ROOT}/scripts/lib/engine.sh"
# No engine call may hang the test (KILL 10 s after TERM).
ENGINE_TIMEOUT=120

IMAGE_REF=${IMAGE:-localhost/hello-path-rs:0.1.0}
MAX_BYTES=${IMAGE_MAX_BYTES:-700000}
NUDGER_REF=${NUDGER_IMAGE:-localhost/hello-path-nudger:0.1.0}
NUDGER_MAX_BYTES=${NUDGER_IMAGE_MAX_BYTES:-2500000}
FAKE_PID=""
BUILD=true
CONTAINERS=()
WORKDIR=""
PREFIX="hello-path-rs-image-test-$$"
NAME=""
# Set by http_get.
HTTP_CODE="" HTTP_BODY="" HTTP_HEADERS=""

usage() {
  sed -n '2,/^[^#]/{/^[^#]/d;/^# shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

indent() { sed 's/^/#   /'; }

finish() {
  if tap_summary; then exit 0; fi
  exit 1
}

# Stops here: the remaining checks cannot run.
bail() {
  not_ok "$*"
  finish
}

cleanup() {
  local c
  if [[ -n "${FAKE_PID}" ]]; then
    kill "${FAKE_PID}" 2>/dev/null || true
    wait "${FAKE_PID}" 2>/dev/null || true
  fi
  for c in "${CONTAINERS[@]}"; do
    ENGINE_TIMEOUT=30 engine rm -f -t 0 "${c}" >/dev/null 2>&1 || true
  done
  if [[ -n "${WORKDIR}" && -d "${WORKDIR}" ]]; then
    rm -rf -- "${WORKDIR}"
  fi
}

parse_args() {
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --no-build) BUILD=false; shift ;;
      *)
        printf 'image.sh: error: unknown argument: %s\n' "$1" >&2
        printf "Try 'bash tests/image.sh --help'.\n" >&2
        exit 2
        ;;
    esac
  done
  engine_global_flags
}

inspect() {
  engine inspect --format "$2" "$1"
}

# Milliseconds since the epoch.
now_ms() {
  local ns
  ns=$(date +%s%N)
  echo $((ns / 1000000))
}

# http_get URL: sets HTTP_CODE, HTTP_BODY, HTTP_HEADERS (status 000 when unreachable).
http_get() {
  local out
  out=$(curl -sS --max-time 2 -D "${WORKDIR}/headers" -o "${WORKDIR}/body" -w '%{http_code}' "$1" 2>/dev/null) \
    || out=000
  HTTP_CODE=${out}
  HTTP_BODY=$(cat "${WORKDIR}/body" 2>/dev/null || true)
  HTTP_HEADERS=$(tr -d '\r' <"${WORKDIR}/headers" 2>/dev/null || true)
  : >"${WORKDIR}/body"
  : >"${WORKDIR}/headers"
}

# expect_get URL CODE BODY: GET URL answers CODE with exactly BODY (trailing newline kept).
expect_get() {
  local url=$1 code=$2 body=$3 got
  curl -sS --max-time 2 -o "${WORKDIR}/body" -w '%{http_code}' "${url}" >"${WORKDIR}/code" 2>/dev/null \
    || echo 000 >"${WORKDIR}/code"
  got=$(<"${WORKDIR}/code")
  # The trailing x keeps trailing newlines that $(...) would strip.
  if [[ "${got}" == "${code}" && "$(cat "${WORKDIR}/body"; echo x)" == "${body}x" ]]; then
    return 0
  fi
  note "GET ${url}: expected ${code} $(printf '%q' "${body}"), got ${got} $(printf '%q' "$(head -c 200 "${WORKDIR}/body")")"
  return 1
}

# new_name SUFFIX: sets NAME to a unique container name, remembered for cleanup (not in a
# $(...) subshell, where the array would be lost).
new_name() {
  NAME="${PREFIX}-$1"
  CONTAINERS+=("${NAME}")
}

# run_detached NAME ARGS...: starts a restricted container publishing 8080 on a free
# loopback port (chosen by the engine) and passes ARGS to hello-path-rs.
run_detached() {
  local name=$1
  shift
  if ! engine run -d --name "${name}" \
    --read-only --cap-drop=ALL --security-opt no-new-privileges \
    -p 127.0.0.1::8080 "${ENGINE_RUN[@]}" "${EXTRA_RUN_ARGS[@]}" \
    "${IMAGE_REF}" "$@" >/dev/null 2>"${WORKDIR}/run.err"; then
    sed 's/^/#   /' "${WORKDIR}/run.err"
    return 1
  fi
}
EXTRA_RUN_ARGS=()

# host_port NAME: the loopback port published for 8080.
host_port() {
  local mapping
  mapping=$(engine port "$1" 8080/tcp | head -n 1) || return 1
  printf '%s\n' "${mapping##*:}"
}

# wait_ready NAME PORT: bounded (15 s) wait for GET /healthz = 200; false early if the
# container stops.
wait_ready() {
  local name=$1 port=$2 deadline
  deadline=$(($(now_ms) + 15000))
  while (($(now_ms) < deadline)); do
    http_get "http://127.0.0.1:${port}/healthz"
    [[ "${HTTP_CODE}" == 200 ]] && return 0
    [[ "$(inspect "${name}" '{{.State.Running}}')" == true ]] || break
    sleep 0.1
  done
  note "gave up waiting for http://127.0.0.1:${port}/healthz (last status ${HTTP_CODE}); logs:"
  show_logs "${name}"
  return 1
}

show_logs() {
  engine logs "$1" 2>&1 | tail -n 20 | sed 's/^/#   /' || true
}

# logs_have NAME TEXT: the container's log holds TEXT; waits up to 5 s, since the engine
# writes the log a moment after the process does.
logs_have() {
  local deadline
  deadline=$(($(now_ms) + 5000))
  while :; do
    engine logs "$1" 2>&1 | grep -qF -- "$2" && return 0
    (($(now_ms) < deadline)) || break
    sleep 0.1
  done
  return 1
}

preflight() {
  if ! command -v "${ENGINE}" >/dev/null 2>&1; then
    bail "container engine '${ENGINE}' is installed (install it: apt-get install podman runc)"
  fi
  if ! command -v curl >/dev/null 2>&1; then
    bail "curl is installed (install it: apt-get install curl)"
  fi
  if ! command -v timeout >/dev/null 2>&1; then
    bail "timeout is installed (install coreutils)"
  fi
}

build_image() {
  if [[ "${BUILD}" == true ]]; then
    local out
    if out=$(IMAGE="${IMAGE_REF}" NUDGER_IMAGE="${NUDGER_REF}" CONTAINER_ENGINE="${ENGINE}" \
      bash "${ROOT}/scripts/build-image.sh" 2>"${WORKDIR}/build.log"); then
      ok "scripts/build-image.sh builds ${IMAGE_REF} and ${NUDGER_REF}: $(paste -sd ';' <<<"${out}")"
    else
      tail -n 20 "${WORKDIR}/build.log" | sed 's/^/#   /'
      bail "scripts/build-image.sh builds ${IMAGE_REF}"
    fi
  fi
  engine image exists "${IMAGE_REF}" || bail "image ${IMAGE_REF} exists"
  engine image exists "${NUDGER_REF}" || bail "image ${NUDGER_REF} exists"
}

# What `run` needs on this machine, found out by starting the image once; a fallback is
# said in one line.
detect_run() {
  if engine_detect_run "${IMAGE_REF}" --version; then
    ok "${ENGINE} starts ${IMAGE_REF} (--version)${ENGINE_NOTE:+, after a fallback}"
  else
    not_ok "${ENGINE} starts ${IMAGE_REF} (--version)"
  fi
  [[ -z "${ENGINE_NOTE}" ]] || note "${ENGINE_NOTE}"
}

# Image configuration as the Containerfile promises it.
check_config() {
  local version
  version=$(sed -n '/^\[package\]/,/^\[/{s/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p;}' "${ROOT}/Cargo.toml" | head -n 1)
  check "image user is numeric 65532:65532" \
    test "$(engine image inspect --format '{{.Config.User}}' "${IMAGE_REF}")" = "65532:65532"
  check "image entrypoint is exec-form [/hello-path-rs]" \
    test "$(engine image inspect --format '{{json .Config.Entrypoint}}' "${IMAGE_REF}")" = '["/hello-path-rs"]'
  check "image stop signal is SIGTERM" \
    test "$(engine image inspect --format '{{.Config.StopSignal}}' "${IMAGE_REF}")" = SIGTERM
  check "image exposes 8080/tcp" \
    grep -qF '"8080/tcp"' <<<"$(engine image inspect --format '{{json .Config.ExposedPorts}}' "${IMAGE_REF}")"
  check "image label version is ${version} and licenses Apache-2.0" \
    test "$(engine image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}} {{index .Config.Labels "org.opencontainers.image.licenses"}}' "${IMAGE_REF}")" = "${version} Apache-2.0"
  check "image label revision is set" \
    test -n "$(engine image inspect --format '{{index .Config.Labels "org.opencontainers.image.revision"}}' "${IMAGE_REF}")"
}

# The image holds the binary and nothing else: list every layer's files.
check_content() {
  local archive="${WORKDIR}/image.tar" files layer
  if ! engine save --format docker-archive -o "${archive}" "${IMAGE_REF}" >/dev/null 2>&1; then
    not_ok "image content is the single file hello-path-rs (save failed)"
    return
  fi
  files=$(
    tar -xOf "${archive}" manifest.json | grep -o '"[^"]*\.tar"' | tr -d '"' | sort -u \
      | while read -r layer; do tar -xOf "${archive}" "${layer}" | tar -t; done | sort -u
  )
  rm -f -- "${archive}"
  if [[ "${files}" == hello-path-rs ]]; then
    ok "image content is the single file hello-path-rs"
  else
    not_ok "image content is the single file hello-path-rs"
    local found
    mapfile -t found <<<"${files}"
    note "found:" "${found[@]}"
  fi
}

check_size() {
  local size
  size=$(engine image inspect --format '{{.Size}}' "${IMAGE_REF}")
  check "image size ${size} bytes ($(((size + 500) / 1000)) kB) is within ${MAX_BYTES} bytes" \
    test "${size}" -le "${MAX_BYTES}"
}

# Serves the article's paths, restricted, as uid 65532; then SIGTERM as PID 1.
check_serve_and_stop() {
  local name port top hpid
  new_name serve
  name=${NAME}
  if ! run_detached "${name}" --mysecret 4321; then
    not_ok "container starts with --mysecret 4321 (read-only, cap-drop ALL, no-new-privileges)"
    return
  fi
  port=$(host_port "${name}") || port=""
  if [[ -z "${port}" ]] || ! wait_ready "${name}" "${port}"; then
    not_ok "container serves /healthz on 127.0.0.1:${port:-?} with --mysecret 4321"
    return
  fi
  ok "container serves /healthz on 127.0.0.1:${port} with --mysecret 4321"
  local base="http://127.0.0.1:${port}"
  check "GET / answers 200 'try to add /test as path'" expect_get "${base}/" 200 $'try to add /test as path\n'
  check "GET /test answers 200 'hello from /test'" expect_get "${base}/test" 200 $'hello from /test\n'
  check "GET /healthz answers 200 ok" expect_get "${base}/healthz" 200 ok
  check "GET /readyz answers 200 ok" expect_get "${base}/readyz" 200 ok
  http_get "${base}/test"
  check "X-Served-By is the container's hostname" \
    grep -qix "x-served-by: $(inspect "${name}" '{{.Config.Hostname}}')" <<<"${HTTP_HEADERS}"

  top=$(engine top "${name}" user pid capeff | tail -n +2 | tr -s ' ')
  check "process runs as user 65532 (podman top: ${top})" test "$(cut -d' ' -f1 <<<"${top}")" = 65532
  check "process is PID 1 in the container" test "$(cut -d' ' -f2 <<<"${top}")" = 1
  check "process has no effective capabilities" test "$(cut -d' ' -f3 <<<"${top}")" = none
  check "root filesystem is read-only" test "$(inspect "${name}" '{{.HostConfig.ReadonlyRootfs}}')" = true
  hpid=$(inspect "${name}" '{{.State.Pid}}')
  check "process has no_new_privs set" grep -qx $'NoNewPrivs:\t1' "/proc/${hpid}/status"

  # SIGTERM to PID 1: with no handler the kernel would ignore it and `stop` would wait out
  # the 10 s grace period, then SIGKILL (exit 137).
  local start elapsed code
  start=$(now_ms)
  engine stop -t 10 "${name}" >/dev/null || true
  elapsed=$(($(now_ms) - start))
  code=$(inspect "${name}" '{{.State.ExitCode}}')
  local finished exited=""
  finished=$(inspect "${name}" '{{.State.FinishedAt}}')
  exited=$(date -d "${finished% UTC}" +%s%3N 2>/dev/null) && exited=" (the process exited $((exited - start)) ms after the stop began)"
  note "podman stop -t 10 took ${elapsed} ms${exited}, exit code ${code}"
  check "SIGTERM as PID 1: exit code 0 (got ${code})" test "${code}" = 0
  check "SIGTERM as PID 1: stopped in ${elapsed} ms, without waiting out the grace period (< 5000 ms)" \
    test "${elapsed}" -lt 5000
}

# The article's first scenario: no secret, exit 1 with the FATAL line.
check_no_secret() {
  local name code deadline
  new_name nosecret
  name=${NAME}
  if ! run_detached "${name}"; then
    not_ok "no secret: container starts"
    return
  fi
  deadline=$(($(now_ms) + 20000))
  while [[ "$(inspect "${name}" '{{.State.Running}}')" == true ]] && (($(now_ms) < deadline)); do
    sleep 0.1
  done
  code=$(inspect "${name}" '{{if .State.Running}}still running after 20 s{{else}}{{.State.ExitCode}}{{end}}')
  check "no secret: container exits 1 (got ${code})" test "${code}" = 1
  if logs_have "${name}" 'FATAL: connection to remote service failed. Check mysecret parameter.'; then
    ok "no secret: logs hold the FATAL line"
  else
    not_ok "no secret: logs hold the FATAL line"
    show_logs "${name}"
  fi
}

# A Secret volume updated the kubelet's way is picked up with no restart.
check_secret_reload() {
  local name port dir="${WORKDIR}/secret" mount_opts=ro
  secret_dir_init "${dir}" mysecret 4321
  # On SELinux hosts the bind mount needs a private label to be readable.
  if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then mount_opts=ro,Z; fi
  new_name reload
  name=${NAME}
  EXTRA_RUN_ARGS=(-v "${dir}:/etc/hello-path:${mount_opts}")
  if ! run_detached "${name}" --reload --mysecret-file /etc/hello-path/mysecret \
    --expected-secret 4321,5678 --watch-interval 250ms; then
    EXTRA_RUN_ARGS=()
    not_ok "reload: container starts with a read-only Secret directory"
    return
  fi
  EXTRA_RUN_ARGS=()
  port=$(host_port "${name}") || port=""
  if [[ -z "${port}" ]] || ! wait_ready "${name}" "${port}"; then
    not_ok "reload: container serves with the secret file /etc/hello-path/mysecret"
    return
  fi
  local base="http://127.0.0.1:${port}" before after
  check "reload: GET /mysecret shows generation 1" expect_get "${base}/mysecret" 200 'my little secret is **** (generation 1)'
  before=$(inspect "${name}" '{{.Id}} {{.State.StartedAt}} {{.RestartCount}} {{.State.Pid}}')

  secret_dir_update "${dir}" mysecret 5678
  local start deadline
  start=$(now_ms)
  deadline=$((start + 15000))
  while (($(now_ms) < deadline)); do
    http_get "${base}/mysecret"
    [[ "${HTTP_BODY}" == *"(generation 2)"* ]] && break
    sleep 0.1
  done
  if [[ "${HTTP_BODY}" == *"(generation 2)"* ]]; then
    ok "reload: GET /mysecret shows generation 2 $(($(now_ms) - start)) ms after the ..data swap"
  else
    not_ok "reload: GET /mysecret shows generation 2 after the ..data swap (waited 15 s, last: ${HTTP_CODE} ${HTTP_BODY})"
    show_logs "${name}"
  fi
  check "reload: logs say 'secret reloaded: generation 2 in use'" logs_have "${name}" 'secret reloaded: generation 2 in use'
  after=$(inspect "${name}" '{{.Id}} {{.State.StartedAt}} {{.RestartCount}} {{.State.Pid}}')
  check "reload: same container, StartedAt, RestartCount and PID (${after#* })" test "${before}" = "${after}"
  check "reload: container still running" test "$(inspect "${name}" '{{.State.Running}}')" = true
  check "reload: GET /readyz still 200" expect_get "${base}/readyz" 200 ok
}

# --- the nudger's image ---------------------------------------------------------------

# The nudger's image: as Containerfile.nudger promises, the binary alone, within budget.
check_nudger_config() {
  local ref=${NUDGER_REF}
  check "nudger image user is numeric 65532:65532" \
    test "$(engine image inspect --format '{{.Config.User}}' "${ref}")" = "65532:65532"
  check "nudger image entrypoint is exec-form [/hello-path-nudger]" \
    test "$(engine image inspect --format '{{json .Config.Entrypoint}}' "${ref}")" = '["/hello-path-nudger"]'
  check "nudger image stop signal is SIGTERM, exposes 8080/tcp" \
    test "$(engine image inspect --format '{{.Config.StopSignal}} {{json .Config.ExposedPorts}}' "${ref}")" = 'SIGTERM {"8080/tcp":{}}'
  check "nudger image labels: title hello-path-nudger, licenses Apache-2.0, a revision" \
    test "$(engine image inspect --format '{{index .Config.Labels "org.opencontainers.image.title"}} {{index .Config.Labels "org.opencontainers.image.licenses"}} {{if index .Config.Labels "org.opencontainers.image.revision"}}rev{{end}}' "${ref}")" = "hello-path-nudger Apache-2.0 rev"
  local archive="${WORKDIR}/nudger.tar" files
  files=$(engine save --format docker-archive -o "${archive}" "${ref}" >/dev/null 2>&1 &&
    tar -xOf "${archive}" manifest.json | grep -o '"[^"]*\.tar"' | tr -d '"' | sort -u |
    while read -r layer; do tar -xOf "${archive}" "${layer}" | tar -t; done | sort -u) || files="(save failed)"
  rm -f -- "${archive}"
  check "nudger image content is the single file hello-path-nudger (found: $(paste -sd ' ' <<<"${files}"))" \
    test "${files}" = hello-path-nudger
  local size
  size=$(engine image inspect --format '{{.Size}}' "${ref}")
  check "nudger image size ${size} bytes ($(((size + 500) / 1000)) kB) is within ${NUDGER_MAX_BYTES} bytes" \
    test "${size}" -le "${NUDGER_MAX_BYTES}"
  local out rc=0
  out=$(engine run --rm "${ENGINE_RUN[@]}" "${ref}" --version 2>&1) || rc=$?
  check "podman run ${ref} --version: '${out}'" test "${rc}:${out}" = "0:hello-path-nudger $(sed -n 's/^version = "\(.*\)"/\1/p' "${ROOT}/nudger/Cargo.toml")"
  rc=0
  out=$(engine run --rm "${ENGINE_RUN[@]}" "${ref}" --help 2>&1) || rc=$?
  check "podman run ${ref} --help: exit 0, the usage" test "${rc}:$(grep -c '^USAGE:' <<<"${out}")" = "0:1"
  rc=0
  out=$(engine run --rm "${ENGINE_RUN[@]}" "${ref}" --bogus 2>&1) || rc=$?
  check "podman run ${ref} --bogus: exit 2, one line and the hint" \
    test "${rc}:$(head -n 1 <<<"${out}")" = "2:hello-path-nudger: error: unknown option --bogus"
}

# The image against the fake API server of tests/nudger.sh: restricted, as uid 65532, the
# kubeconfig and CA mounted read-only, on the host's network to reach 127.0.0.1.
check_nudger_run() {
  local dir="${WORKDIR}/nudger" port i addr="" name code start elapsed mount_opts=ro
  mkdir -p "${dir}/etc"
  if ! fake_api_start "${dir}" image-token image-test; then
    not_ok "nudger image: ${FAKE_WHY}"
    sed 's/^/#   /' "${dir}/server.err"
    return
  fi
  port=${FAKE_PORT}
  cp "${dir}/certs/ca.crt" "${dir}/etc/ca.crt"
  printf 'image-token' >"${dir}/etc/token"
  cat >"${dir}/etc/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "https://127.0.0.1:${port}", certificate-authority: ca.crt}}]
users: [{name: nudger, user: {tokenFile: token}}]
contexts: [{name: fake, context: {cluster: fake, user: nudger, namespace: shop}}]
current-context: fake
EOF
  chmod 0755 "${dir}/etc"
  chmod 0644 "${dir}/etc/"*
  if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then mount_opts=ro,Z; fi
  new_name nudger
  name=${NAME}
  if ! engine run -d --name "${name}" --read-only --cap-drop=ALL --security-opt no-new-privileges \
    --network host -v "${dir}/etc:/etc/nudger:${mount_opts}" "${ENGINE_RUN[@]}" "${NUDGER_REF}" \
    --kubeconfig /etc/nudger/kubeconfig --listen-addr 127.0.0.1:0 >/dev/null 2>"${dir}/run.err"; then
    not_ok "nudger image: starts restricted against the fake API server"
    sed 's/^/#   /' "${dir}/run.err"
    return
  fi
  for ((i = 0; i < 150; i++)); do
    addr=$(engine logs "${name}" 2>&1 | grep -o '/readyz on 127\.0\.0\.1:[0-9]*' | head -n 1 | cut -d' ' -f3) || addr=""
    [[ -z "${addr}" ]] || break
    sleep 0.1
  done
  code=000
  for ((i = 0; i < 150 && ${#addr} > 0; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://${addr}/readyz") || code=000
    [[ "${code}" != 200 ]] || break
    sleep 0.1
  done
  if [[ "${code}" == 200 ]]; then
    ok "nudger image: Ready against the fake API server over TLS (kubeconfig, CA and token mounted read-only)"
  else
    not_ok "nudger image: Ready against the fake API server over TLS (last /readyz: ${code})"
    show_logs "${name}"
    return
  fi
  local top
  top=$(engine top "${name}" user pid capeff | tail -n +2 | tr -s ' ')
  check "nudger image: runs as 65532, PID 1, no capabilities (podman top: ${top})" test "${top}" = "65532 1 none"
  python3 "${ROOT}/tests/lib/fake_apiserver.py" ctl "${dir}/cport" set-data secrets shop app-secret '{"data":{"k":"aW1hZ2U="}}' >/dev/null
  for ((i = 0; i < 100; i++)); do
    [[ "$(grep -c '^patch pods shop .* 200 ' "${dir}/log")" -lt 8 ]] || break
    sleep 0.1
  done
  check "nudger image: a change of app-secret annotates its 8 running pods" \
    test "$(grep -c '^patch pods shop .* 200 ' "${dir}/log")" = 8
  start=$(now_ms)
  engine stop -t 10 "${name}" >/dev/null || true
  elapsed=$(($(now_ms) - start))
  code=$(inspect "${name}" '{{.State.ExitCode}}')
  check "nudger image: SIGTERM as PID 1: exit 0 (got ${code}) in ${elapsed} ms (< 5000)" \
    test "${code}:$((elapsed < 5000))" = "0:1"
}

# --- scripts/load-image.sh, against fakes: kubectl, podman, kind, k3d, minikube, k3s ----
# (tests/fixtures/fakebin: each appends "NAME ARGS" to $FAKE_CALLS)

# run_load [VAR=VALUE...] -- [ARGS...]: runs load-image.sh with the fakes first on PATH;
# sets LOAD_RC, LOAD_OUT (stdout and stderr), LOAD_MS; FAKE_CALLS is emptied first.
run_load() {
  local envs=() start
  while (($# > 0)) && [[ "$1" != -- ]]; do envs+=("$1"); shift; done
  shift
  : >"${WORKDIR}/calls"
  LOAD_RC=0
  start=$(now_ms)
  LOAD_OUT=$(env PATH="${ROOT}/tests/fixtures/fakebin:${PATH}" FAKE_CALLS="${WORKDIR}/calls" KUBECTL=kubectl \
    CONTAINER_ENGINE=podman PODMAN_GLOBAL_FLAGS= REGISTRY= IMAGE=localhost/hello-path-rs:0.1.0 \
    FAKE_CONTEXT= FAKE_NODES= FAKE_HANG= "${envs[@]}" \
    timeout -k 5 60 bash "${ROOT}/scripts/load-image.sh" "$@" 2>&1) || LOAD_RC=$?
  LOAD_MS=$(($(now_ms) - start))
}

calls_have() {
  grep -qE -- "$1" "${WORKDIR}/calls" && return 0
  note "no call matches /$1/; calls:"
  sed 's/^/#   /' "${WORKDIR}/calls"
  return 1
}

load_ok() {
  ((LOAD_RC == 0)) && return 0
  note "load-image.sh exited ${LOAD_RC}:"
  indent <<<"${LOAD_OUT}"
  return 1
}

check_load_image() {
  local archive_re='/load-image\.[^/ ]*/hello-path-rs\.tar'

  run_load -- --help
  check "load-image.sh --help exits 0 with usage" test "${LOAD_RC}" = 0 -a -n "$(grep -F 'Usage:' <<<"${LOAD_OUT}")"
  run_load -- --bogus
  check "load-image.sh --bogus exits 2 (got ${LOAD_RC})" test "${LOAD_RC}" = 2
  run_load -- --context
  check "load-image.sh --context without a value exits 2 (got ${LOAD_RC})" test "${LOAD_RC}" = 2
  run_load -- --cluster-type nope
  check "load-image.sh --cluster-type nope exits 2 (got ${LOAD_RC})" test "${LOAD_RC}" = 2

  run_load FAKE_CONTEXT=kind-dev --
  check "kind-dev context: exits 0" load_ok
  check "kind-dev context: asks kubectl for the current context, bounded (--request-timeout=5s)" \
    calls_have '^kubectl --request-timeout=5s config current-context$'
  check "kind-dev context: archives the image under its own name" \
    calls_have "^podman push -q localhost/hello-path-rs:0\.1\.0 docker-archive:[^ ]*${archive_re#/}:localhost/hello-path-rs:0\.1\.0$"
  check "kind-dev context: kind load image-archive ARCHIVE --name dev" \
    calls_have "^kind load image-archive [^ ]*${archive_re#/} --name dev$"
  check "kind-dev context: kind got an existing archive" calls_have '^archive-present '
  check "kind-dev context: the nudger's image too, under its own name" \
    calls_have "^kind load image-archive [^ ]*/load-image\.[^/ ]*/hello-path-nudger\.tar --name dev$"
  local archive
  archive=$(grep -o "[^ ]*${archive_re#/}" "${WORKDIR}/calls" | head -n 1)
  check "kind-dev context: the archive is removed afterwards" test -n "${archive}" -a ! -e "${archive:-/}"

  run_load FAKE_CONTEXT=kind-dev -- --only nudger
  check "--only nudger: only the nudger's image is loaded" \
    test "$(grep -c '^kind load' "${WORKDIR}/calls"):$(grep -c 'hello-path-rs\.tar' "${WORKDIR}/calls")" = "1:0"
  run_load FAKE_CONTEXT=kind-dev -- --only both
  check "--only both: exit 2 (got ${LOAD_RC})" test "${LOAD_RC}" = 2

  run_load -- --context k3d-demo
  check "--context k3d-demo: k3d image import ARCHIVE -c demo" calls_have "^k3d image import [^ ]*${archive_re#/} -c demo$"
  check "--context k3d-demo: exits 0" load_ok
  run_load FAKE_CONTEXT=minikube --
  check "minikube context: minikube image load ARCHIVE -p minikube" \
    calls_have "^minikube image load [^ ]*${archive_re#/} -p minikube$"

  run_load FAKE_CONTEXT=default 'FAKE_NODES=amd64||v1.30.6+k3s1|' --
  check "k3s node (kubelet +k3s), k3s here: k3s ctr images import ARCHIVE" \
    calls_have "^k3s ctr images import [^ ]*${archive_re#/}$"
  check "k3s node: nodes read with --request-timeout=5s from the context found" calls_have '^kubectl --request-timeout=5s --context default get nodes '
  run_load FAKE_CONTEXT=default 'FAKE_NODES=amd64||v1.30.6+k3s1|' K3S=no-such-k3s --
  check "k3s node, no k3s here: exits 2 (got ${LOAD_RC}) and prints the node-side import" \
    test "${LOAD_RC}" = 2 -a -n "$(grep -F 'sudo k3s ctr images import' <<<"${LOAD_OUT}")"

  run_load FAKE_CONTEXT=lab 'FAKE_NODES=amd64|kind://podman/blue/blue-control-plane|v1.30.0|' --
  check "context 'lab' with kind:// nodes: kind load ... --name blue" calls_have '^kind load image-archive .* --name blue$'
  run_load FAKE_CONTEXT=lab 'FAKE_NODES=arm64||v1.31.0|lab' --
  check "context 'lab' with a minikube node label: minikube image load ... -p lab" calls_have '^minikube image load .* -p lab$'

  run_load FAKE_CONTEXT=prod 'FAKE_NODES=amd64|aws:///eu-west-1a/i-0123|v1.30.2-eks-1|' --
  check "unknown cluster: exits 2 (got ${LOAD_RC}), says it cannot tell and how to go on" \
    test "${LOAD_RC}" = 2 -a -n "$(grep -F 'cannot tell' <<<"${LOAD_OUT}" | grep -F "prod")" \
    -a -n "$(grep -F -- '--registry' <<<"${LOAD_OUT}")"
  check "unknown cluster: nothing imported" test -z "$(grep -E '^(kind|k3d|minikube|k3s) ' "${WORKDIR}/calls")"
  run_load --
  check "no current context: exits 2 (got ${LOAD_RC})" test "${LOAD_RC}" = 2

  run_load FAKE_CONTEXT=kind-dev 'KUBECTL=kubectl --kubeconfig /tmp/none' --
  check "KUBECTL with arguments is honoured" calls_have '^kubectl --kubeconfig /tmp/none --request-timeout=5s config current-context$'
  run_load FAKE_HANG=1 --
  check "a kubectl that never answers: exits 2 (got ${LOAD_RC}) in ${LOAD_MS} ms (< 20000)" \
    test "${LOAD_RC}" = 2 -a "${LOAD_MS}" -lt 20000

  run_load FAKE_CONTEXT=kind-dev -- --registry registry.example:5000/demo/
  check "--registry: pushes to registry.example:5000/demo/hello-path-rs:0.1.0" \
    calls_have '^podman push localhost/hello-path-rs:0\.1\.0 docker://registry\.example:5000/demo/hello-path-rs:0\.1\.0$'
  check "--registry: no cluster is asked or loaded" \
    test -z "$(grep -E '^(kubectl|kind|k3d|minikube|k3s) ' "${WORKDIR}/calls")"
  run_load REGISTRY=reg.local --
  check "REGISTRY=reg.local: pushes to reg.local/hello-path-rs:0.1.0" \
    calls_have '^podman push localhost/hello-path-rs:0\.1\.0 docker://reg\.local/hello-path-rs:0\.1\.0$'
}

main() {
  parse_args "$@"
  trap cleanup EXIT
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/image-test.XXXXXX")
  check_load_image
  preflight
  build_image
  detect_run
  note "engine: ${ENGINE} ${ENGINE_GLOBAL[*]}; run flags: ${ENGINE_RUN[*]:-none}; image: ${IMAGE_REF}"
  check_config
  check_content
  check_size
  check_serve_and_stop
  check_no_secret
  check_secret_reload
  check_nudger_config
  check_nudger_run
  finish
}

main "$@"
