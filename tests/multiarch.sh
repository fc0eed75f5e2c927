#!/usr/bin/env bash
# multiarch.sh — amd64 + arm64 images under one reference, for the service and the nudger.
#
# Builds both static binaries and both images with
# `scripts/build-image.sh --platforms linux/amd64,linux/arm64` under a throwaway reference,
# then checks, one line each: the list's image for this machine's architecture starts in
# podman (what `run` needs here is found out, as in tests/image.sh), the arm64 binary is
# static and really runs (qemu user-mode:
# --version, the FATAL exit without a secret, GET /test, exit 0 on SIGTERM), the manifest
# list holds exactly the two platforms and points at the right images, each image carries
# the binary of its architecture and fits the size budget, scripts/load-image.sh exports
# the image of the cluster's architecture under the common name, and a later single-arch
# build can take the name back from the list. The nudger's list the same way (its budget
# 2.5 MB), and its arm64 binary (its C, ring, cross-compiled by clang) static and working
# under qemu: --version, then Ready against the fake API server over TLS, a change nudged,
# exit 0 on SIGTERM.
#
# Usage:
#   bash tests/multiarch.sh
#
# Output: `ok - ...` / `not ok - ...` lines, then `N passed, M failed`.
# Exit status: 0 all passed, 1 a check failed, 2 bad arguments.
#
# Environment:
#   CONTAINER_ENGINE    podman (default; the checks use podman's CLI)
#   PODMAN_GLOBAL_FLAGS global podman flags, e.g. "--runtime runc", and
#   PODMAN_RUN_FLAGS    extra `run` flags: overrides of what is found out by starting the
#                       image of this machine's architecture once (scripts/lib/engine.sh)
#                       (default: found out)
#   IMAGE_MAX_BYTES     size budget per image (default: 700000, i.e. 700 kB)
#   NUDGER_IMAGE_MAX_BYTES  the nudger's (default: 2500000, i.e. 2.5 MB)
#   QEMU_AARCH64        user-mode emulator (default: qemu-aarch64-static, Debian package
#                       qemu-user-static; installed with apt-get when missing and root)
# shellcheck disable=SC2317 # helpers run through `check` and `trap`, which it cannot follow
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
# shellcheck source=tests/lib/tap.sh
. "${ROOT}/tests/lib/tap.sh"
# shellcheck source=tests/lib/fake-api.sh
. "${ROOT}/tests/lib/fake-api.sh"
# The engine and what `run` needs here: engine, engine_detect_run.
ENGINE=${CONTAINER_ENGINE:-podman}
# shellcheck source=scripts/lib/engine.sh
. "${ROOT}/scripts/lib/engine.sh"
# No engine call may hang the test (KILL 10 s after TERM).
ENGINE_TIMEOUT=120
MAX_BYTES=${IMAGE_MAX_BYTES:-700000}
QEMU=${QEMU_AARCH64:-qemu-aarch64-static}
LIST_REF="localhost/hello-path-rs:multiarch-test-$$"
NUDGER_LIST_REF="localhost/hello-path-nudger:multiarch-test-$$"
NUDGER_MAX_BYTES=${NUDGER_IMAGE_MAX_BYTES:-2500000}
ARM_BIN="${CARGO_TARGET_DIR:-${ROOT}/target}/aarch64-unknown-linux-musl/release/hello-path-rs"
ARM_NUDGER="${CARGO_TARGET_DIR:-${ROOT}/target}/aarch64-unknown-linux-musl/release/hello-path-nudger"
FAKE_PID=""
WORKDIR=""
CHILD_PID=""
CREATED_IMAGES=false

usage() {
  sed -n '2,/^[^#]/{/^[^#]/d;/^# shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

finish() {
  if tap_summary; then exit 0; fi
  exit 1
}
bail() {
  not_ok "$*"
  finish
}

cleanup() {
  if [[ -n "${CHILD_PID}" ]] && kill -0 "${CHILD_PID}" 2>/dev/null; then
    kill -KILL "${CHILD_PID}" 2>/dev/null || true
    wait "${CHILD_PID}" 2>/dev/null || true
  fi
  if [[ -n "${FAKE_PID}" ]]; then
    kill "${FAKE_PID}" 2>/dev/null || true
    wait "${FAKE_PID}" 2>/dev/null || true
  fi
  if [[ "${CREATED_IMAGES}" == true ]]; then
    local ref list
    for list in "${LIST_REF}" "${NUDGER_LIST_REF}"; do
      if engine manifest inspect "${list}" >/dev/null 2>&1; then
        engine manifest rm "${list}" >/dev/null 2>&1 || true
      fi
      for ref in "${list}" "${list}-amd64" "${list}-arm64"; do
        engine rmi "${ref}" >/dev/null 2>&1 || true
      done
    done
  fi
  if [[ -n "${WORKDIR}" && -d "${WORKDIR}" ]]; then
    rm -rf -- "${WORKDIR}"
  fi
}

now_ms() {
  local ns
  ns=$(date +%s%N)
  echo $((ns / 1000000))
}

preflight() {
  [[ "$(basename -- "${ENGINE}")" == podman ]] \
    || bail "CONTAINER_ENGINE is podman (these checks use podman's CLI), not '${ENGINE}'"
  command -v "${ENGINE}" >/dev/null 2>&1 \
    || bail "${ENGINE} is installed (install it: apt-get install podman runc)"
  command -v readelf >/dev/null 2>&1 || bail "readelf is installed (install it: apt-get install binutils)"
  command -v curl >/dev/null 2>&1 || bail "curl is installed (install it: apt-get install curl)"
  command -v openssl >/dev/null 2>&1 || bail "openssl is installed (install it: apt-get install openssl)"
  if ! command -v "${QEMU}" >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      note "installing qemu-user-static (for ${QEMU})"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static; } >/dev/null 2>&1 || true
    fi
    command -v "${QEMU}" >/dev/null 2>&1 \
      || bail "${QEMU} is installed (install it: apt-get install qemu-user-static)"
  fi
  engine_global_flags
}

build() {
  local out
  CREATED_IMAGES=true
  if out=$(IMAGE="${LIST_REF}" NUDGER_IMAGE="${NUDGER_LIST_REF}" CONTAINER_ENGINE="${ENGINE}" \
    bash "${ROOT}/scripts/build-image.sh" --platforms linux/amd64,linux/arm64 2>"${WORKDIR}/build.log"); then
    ok "scripts/build-image.sh --platforms linux/amd64,linux/arm64 builds ${LIST_REF} and ${NUDGER_LIST_REF}"
    local line
    while read -r line; do note "${line}"; done <<<"${out}"
  else
    tail -n 20 "${WORKDIR}/build.log" | sed 's/^/#   /'
    bail "scripts/build-image.sh --platforms linux/amd64,linux/arm64 builds ${LIST_REF} and ${NUDGER_LIST_REF}"
  fi
  if [[ -r /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    note "binfmt_misc has a qemu-aarch64 handler (the build has no RUN step, so it used none)"
  else
    note "no binfmt_misc handler for aarch64: the arm64 image was built without emulation"
  fi
}

# The list's image of this machine's architecture starts (`run` of the list's name picks
# it), with what `run` needs here found out once; a fallback is said in one line.
check_native_run() {
  local arch
  case "$(uname -m)" in
    aarch64 | arm64) arch=arm64 ;;
    *) arch=amd64 ;;
  esac
  if engine_detect_run "${LIST_REF}" --version; then
    ok "${ENGINE} run ${LIST_REF} starts its ${arch} image (--version)${ENGINE_NOTE:+, after a fallback}"
  else
    not_ok "${ENGINE} run ${LIST_REF} starts its ${arch} image (--version)"
  fi
  [[ -z "${ENGINE_NOTE}" ]] || note "${ENGINE_NOTE}"
}

# FILE: readelf's machine name, and whether a program interpreter is requested.
check_arm_binary() {
  local machine
  machine=$(readelf -h "${ARM_BIN}" 2>/dev/null | sed -n 's/^ *Machine: *//p')
  check "arm64 binary is an AArch64 ELF (readelf: ${machine:-not an ELF})" test "${machine}" = AArch64
  if readelf -l "${ARM_BIN}" 2>/dev/null | grep -q 'INTERP'; then
    not_ok "arm64 binary is static (readelf -l shows no INTERP)"
  else
    ok "arm64 binary is static (readelf -l shows no INTERP)"
  fi

  local version
  version=$(timeout 20 "${QEMU}" "${ARM_BIN}" --version 2>&1) || true
  check "arm64 binary runs under ${QEMU}: --version prints '${version}'" \
    test "${version}" = "hello-path-rs $(sed -n '/^\[package\]/,/^\[/{s/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p;}' "${ROOT}/Cargo.toml" | head -n 1)"

  local rc=0
  timeout 20 "${QEMU}" "${ARM_BIN}" --listen-addr 127.0.0.1:0 >"${WORKDIR}/nosecret.log" 2>&1 || rc=$?
  check "arm64 binary without a secret exits 1 (got ${rc})" test "${rc}" = 1
  check "arm64 binary without a secret logs the FATAL line" \
    grep -qF 'FATAL: connection to remote service failed. Check mysecret parameter.' "${WORKDIR}/nosecret.log"

  "${QEMU}" "${ARM_BIN}" --listen-addr 127.0.0.1:0 --mysecret 4321 >"${WORKDIR}/serve.log" 2>&1 &
  CHILD_PID=$!
  local addr="" deadline
  deadline=$(($(now_ms) + 15000))
  while (($(now_ms) < deadline)) && kill -0 "${CHILD_PID}" 2>/dev/null; do
    addr=$(grep -o 'Web service accessible at [0-9.]*:[0-9]*' "${WORKDIR}/serve.log" | head -n 1) || addr=""
    addr=${addr##* }
    [[ -z "${addr}" ]] || break
    sleep 0.1
  done
  if [[ -z "${addr}" ]]; then
    not_ok "arm64 binary serves GET /test under ${QEMU} (no 'Web service accessible at' within 15 s)"
    sed 's/^/#   /' "${WORKDIR}/serve.log"
    return
  fi
  local body
  body=$(curl -sS --max-time 5 "http://${addr}/test"; echo x) || body=""
  check "arm64 binary serves GET /test at ${addr}" test "${body}" = $'hello from /test\nx'
  kill -TERM "${CHILD_PID}"
  rc=0
  local start
  start=$(now_ms)
  # A bounded wait: wait(1) itself cannot time out, so poll.
  while kill -0 "${CHILD_PID}" 2>/dev/null && (($(now_ms) - start < 10000)); do sleep 0.05; done
  wait "${CHILD_PID}" 2>/dev/null || rc=$?
  CHILD_PID=""
  check "arm64 binary exits 0 on SIGTERM (got ${rc})" test "${rc}" = 0
}

# check_manifest LIST BINARY BUDGET — the list: exactly linux/amd64 and linux/arm64, each
# entry the digest of its image, which holds BINARY for its architecture within BUDGET.
check_manifest() {
  local list=$1 binary=$2 budget=$3 json platforms count
  json=$(engine manifest inspect "${list}" 2>/dev/null) || bail "${ENGINE} manifest inspect ${list}"
  count=$(grep -c '"digest"' <<<"${json}" || true)
  platforms=$(tr -d ' \n' <<<"${json}" | grep -o '"platform":{[^}]*}' \
    | sed -e 's/.*"architecture":"\([^"]*\)".*"os":"\([^"]*\)".*/\2\/\1/' | sort | paste -sd, -)
  check "manifest list ${list} has exactly 2 entries (got ${count})" test "${count}" = 2
  check "manifest list ${list} platforms are linux/amd64,linux/arm64 (got ${platforms})" \
    test "${platforms}" = linux/amd64,linux/arm64

  local arch ref digest config_arch size
  for arch in amd64 arm64; do
    ref="${list}-${arch}"
    config_arch=$(engine image inspect --format '{{.Os}}/{{.Architecture}}' "${ref}" 2>/dev/null) || config_arch=missing
    check "image ${ref} config says linux/${arch} (got ${config_arch})" test "${config_arch}" = "linux/${arch}"
    digest=$(engine image inspect --format '{{.Digest}}' "${ref}" 2>/dev/null) || digest=missing
    check "manifest list entry for ${arch} is ${ref} (${digest:0:19}...)" \
      grep -q "\"digest\": *\"${digest}\"" <<<"${json}"
    check_image_binary "${ref}" "${arch}" "${binary}"
    size=$(engine image inspect --format '{{.Size}}' "${ref}" 2>/dev/null) || size=999999999
    check "image ${ref} size ${size} bytes ($(((size + 500) / 1000)) kB) is within ${budget} bytes" \
      test "${size}" -le "${budget}"
  done
}

# REF ARCH BINARY: the image's only file is BINARY, for ARCH.
check_image_binary() {
  local ref=$1 arch=$2 binary=$3
  local archive="${WORKDIR}/${binary}-${arch}.tar" dir="${WORKDIR}/${binary}-${arch}" want machine layer
  case "${arch}" in
    amd64) want="Advanced Micro Devices X86-64" ;;
    arm64) want=AArch64 ;;
  esac
  mkdir -p -- "${dir}"
  if engine save --format docker-archive -o "${archive}" "${ref}" >/dev/null 2>&1; then
    for layer in $(tar -xOf "${archive}" manifest.json | grep -o '"[^"]*\.tar"' | tr -d '"' | sort -u); do
      tar -xOf "${archive}" "${layer}" | tar -x -C "${dir}"
    done
  fi
  machine=$(readelf -h "${dir}/${binary}" 2>/dev/null | sed -n 's/^ *Machine: *//p')
  check "image ${ref} holds the ${arch} ${binary} (readelf: ${machine:-none})" test "${machine}" = "${want}"
}

# load-image.sh with a fake kubectl on an arm64 cluster: the archive is the arm64 image,
# under the list's name.
check_load_arch() {
  local fake="${WORKDIR}/fakebin" out rc=0 tags config arch
  # The fakes of tests/fixtures/fakebin, kubectl and kind only (the real podman writes the
  # archive): a kind cluster whose node is arm64; kind keeps the archive it is given.
  mkdir -p -- "${fake}"
  ln -s -- "${ROOT}/tests/fixtures/fakebin/kubectl" "${ROOT}/tests/fixtures/fakebin/kind" "${fake}/"
  out=$(PATH="${fake}:${PATH}" KUBECTL=kubectl IMAGE="${LIST_REF}" CONTAINER_ENGINE="${ENGINE}" \
    FAKE_CONTEXT=kind-arm FAKE_NODES='arm64|kind://podman/arm/arm-control-plane|v1.30.0|' \
    FAKE_CALLS="${WORKDIR}/kind.calls" FAKE_KEEP="${WORKDIR}" \
    bash "${ROOT}/scripts/load-image.sh" --only service 2>"${WORKDIR}/load.log") || rc=$?
  check "load-image.sh with a manifest list and an arm64 kind node exits 0 (got ${rc}: ${out})" test "${rc}" = 0
  if [[ ! -s "${WORKDIR}/loaded.tar" ]]; then
    not_ok "load-image.sh hands kind an archive"
    sed 's/^/#   /' "${WORKDIR}/load.log"
    return
  fi
  tags=$(tar -xOf "${WORKDIR}/loaded.tar" manifest.json | grep -o '"RepoTags":\[[^]]*\]')
  check "the archive is tagged ${LIST_REF} (${tags})" grep -qF "\"${LIST_REF}\"" <<<"${tags}"
  config=$(tar -xOf "${WORKDIR}/loaded.tar" manifest.json | grep -o '"Config":"[^"]*"' | cut -d'"' -f4)
  arch=$(tar -xOf "${WORKDIR}/loaded.tar" "${config}" | grep -o '"architecture":"[^"]*"' | cut -d'"' -f4)
  check "the archive holds the arm64 image (config architecture ${arch})" test "${arch}" = arm64
  check "kind was called for cluster 'arm'" grep -q -- '--name arm$' "${WORKDIR}/kind.calls"
}

# The arm64 nudger: static, and working under qemu: --version, then against the fake API
# server over TLS (TLS and ring's cross-compiled C at work): Ready, a change nudged, exit 0
# on SIGTERM.
check_arm_nudger() {
  local machine dir="${WORKDIR}/nudger" i addr="" code=000 rc
  machine=$(readelf -h "${ARM_NUDGER}" 2>/dev/null | sed -n 's/^ *Machine: *//p')
  check "arm64 nudger is an AArch64 ELF (readelf: ${machine:-not an ELF})" test "${machine}" = AArch64
  if readelf -l "${ARM_NUDGER}" 2>/dev/null | grep -q 'INTERP'; then
    not_ok "arm64 nudger is static (readelf -l shows no INTERP)"
  else
    ok "arm64 nudger is static (readelf -l shows no INTERP)"
  fi
  local version
  version=$(timeout 20 "${QEMU}" "${ARM_NUDGER}" --version 2>&1) || true
  check "arm64 nudger runs under ${QEMU}: --version prints '${version}'" \
    test "${version}" = "hello-path-nudger $(sed -n 's/^version = "\(.*\)"/\1/p' "${ROOT}/nudger/Cargo.toml")"
  if ! fake_api_start "${dir}" arm-token arm-test; then
    not_ok "arm64 nudger: ${FAKE_WHY}"
    sed 's/^/#   /' "${dir}/server.err"
    return
  fi
  printf 'arm-token' >"${dir}/token"
  cat >"${dir}/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "https://127.0.0.1:${FAKE_PORT}", certificate-authority: certs/ca.crt}}]
users: [{name: arm, user: {tokenFile: token}}]
contexts: [{name: fake, context: {cluster: fake, user: arm, namespace: shop}}]
current-context: fake
EOF
  "${QEMU}" "${ARM_NUDGER}" --kubeconfig "${dir}/kubeconfig" --listen-addr 127.0.0.1:0 >"${dir}/nudger.log" 2>&1 &
  CHILD_PID=$!
  for ((i = 0; i < 300; i++)); do
    addr=$(grep -o '/readyz on 127\.0\.0\.1:[0-9]*' "${dir}/nudger.log" | head -n 1 | cut -d' ' -f3) || addr=""
    if [[ -n "${addr}" ]]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://${addr}/readyz") || code=000
      [[ "${code}" != 200 ]] || break
    fi
    kill -0 "${CHILD_PID}" 2>/dev/null || break
    sleep 0.1
  done
  if [[ "${code}" != 200 ]]; then
    not_ok "arm64 nudger under ${QEMU}: Ready against the fake API server over TLS (last /readyz: ${code})"
    sed 's/^/#   /' "${dir}/nudger.log" | tail -n 10
    return
  fi
  ok "arm64 nudger under ${QEMU}: Ready against the fake API server over TLS"
  python3 "${ROOT}/tests/lib/fake_apiserver.py" ctl "${dir}/cport" set-data secrets shop app-secret '{"data":{"k":"YXJt"}}' >/dev/null
  for ((i = 0; i < 150; i++)); do
    [[ "$(grep -c '^patch pods shop .* 200 ' "${dir}/log")" -lt 8 ]] || break
    sleep 0.1
  done
  check "arm64 nudger under ${QEMU}: a change of app-secret annotates its 8 running pods" \
    test "$(grep -c '^patch pods shop .* 200 ' "${dir}/log")" = 8
  kill -TERM "${CHILD_PID}"
  local start
  start=$(now_ms)
  while kill -0 "${CHILD_PID}" 2>/dev/null && (($(now_ms) - start < 10000)); do sleep 0.05; done
  rc=0
  wait "${CHILD_PID}" 2>/dev/null || rc=$?
  CHILD_PID=""
  check "arm64 nudger exits 0 on SIGTERM (got ${rc})" test "${rc}" = 0
}

# The nudger's list loaded for an arm64 kind node: the arm64 image, under the list's name.
check_load_arch_nudger() {
  local fake="${WORKDIR}/fakebin" rc=0 tags config arch
  rm -f -- "${WORKDIR}/loaded.tar"
  PATH="${fake}:${PATH}" KUBECTL=kubectl NUDGER_IMAGE="${NUDGER_LIST_REF}" CONTAINER_ENGINE="${ENGINE}" \
    FAKE_CONTEXT=kind-arm FAKE_NODES='arm64|kind://podman/arm/arm-control-plane|v1.30.0|' \
    FAKE_CALLS="${WORKDIR}/kind-nudger.calls" FAKE_KEEP="${WORKDIR}" \
    bash "${ROOT}/scripts/load-image.sh" --only nudger >/dev/null 2>"${WORKDIR}/load-nudger.log" || rc=$?
  check "load-image.sh --only nudger with the nudger's list and an arm64 kind node exits 0 (got ${rc})" test "${rc}" = 0
  if [[ ! -s "${WORKDIR}/loaded.tar" ]]; then
    not_ok "load-image.sh hands kind the nudger's archive"
    sed 's/^/#   /' "${WORKDIR}/load-nudger.log"
    return
  fi
  tags=$(tar -xOf "${WORKDIR}/loaded.tar" manifest.json | grep -o '"RepoTags":\[[^]]*\]')
  config=$(tar -xOf "${WORKDIR}/loaded.tar" manifest.json | grep -o '"Config":"[^"]*"' | cut -d'"' -f4)
  arch=$(tar -xOf "${WORKDIR}/loaded.tar" "${config}" | grep -o '"architecture":"[^"]*"' | cut -d'"' -f4)
  check "the nudger's archive is tagged ${NUDGER_LIST_REF} and holds the arm64 image (${tags}, ${arch})" \
    test "$(grep -cF "\"${NUDGER_LIST_REF}\"" <<<"${tags}"):${arch}" = "1:arm64"
}

# A single-arch build over the list's name replaces the list cleanly.
check_rebuild_over_list() {
  if IMAGE="${LIST_REF}" CONTAINER_ENGINE="${ENGINE}" bash "${ROOT}/scripts/build-image.sh" --only service --no-cargo \
    >/dev/null 2>"${WORKDIR}/rebuild.log"; then
    ok "single-arch build-image.sh over the manifest list name succeeds"
  else
    not_ok "single-arch build-image.sh over the manifest list name succeeds"
    tail -n 10 "${WORKDIR}/rebuild.log" | sed 's/^/#   /'
  fi
  if engine manifest inspect "${LIST_REF}" >/dev/null 2>&1; then
    not_ok "${LIST_REF} is a plain image again, not a list"
  else
    ok "${LIST_REF} is a plain image again, not a list"
  fi
  if engine images --format '{{.ID}}' >/dev/null 2>"${WORKDIR}/images.err"; then
    ok "${ENGINE} images still lists the local images (no dangling list)"
  else
    not_ok "${ENGINE} images still lists the local images (no dangling list)"
    sed 's/^/#   /' "${WORKDIR}/images.err"
  fi
}

main() {
  case "${1:-}" in
    "") ;;
    -h | --help) usage; exit 0 ;;
    *)
      printf 'multiarch.sh: error: unknown argument: %s\n' "$1" >&2
      printf "Try 'bash tests/multiarch.sh --help'.\n" >&2
      exit 2
      ;;
  esac
  trap cleanup EXIT
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/multiarch-test.XXXXXX")
  preflight
  note "engine: ${ENGINE} ${ENGINE_GLOBAL[*]}; list: ${LIST_REF}"
  build
  check_native_run
  check_arm_binary
  check_manifest "${LIST_REF}" hello-path-rs "${MAX_BYTES}"
  check_load_arch
  check_arm_nudger
  check_manifest "${NUDGER_LIST_REF}" hello-path-nudger "${NUDGER_MAX_BYTES}"
  check_load_arch_nudger
  check_rebuild_over_list
  finish
}

main "$@"
