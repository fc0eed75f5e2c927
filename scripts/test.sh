#!/usr/bin/env bash
# The one test command of hello-path-rs.
#
# Builds the binary, runs the Rust tests (unit + integration against the real binary), then
# the checks of the other parts: shellcheck on every script, the manifests (kustomize + schema
# validation), the container image in a real engine, and the local walkthrough end to end.
#
# Usage: scripts/test.sh [--prepare] [--only STEP[,STEP...]]
#   --prepare   install what the tests need (as root: apt-get, rustup), then exit
#   --only      run only these steps: rust, shellcheck, manifests, image, multiarch,
#               walkthrough, bench (a quick smoke run of scripts/bench.sh, no timing asserted)
#
# Missing prerequisites are installed when running as root; otherwise they are named and the
# run fails. Environment:
#   CONTAINER_ENGINE   podman (default), or docker/buildah where the image tests support it
#   PODMAN_RUN_FLAGS, PODMAN_GLOBAL_FLAGS   extra flags for machines that need them (.ci/)
#   VENV               virtualenv for the manifest checks (default: .venv)
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEPS=(rust shellcheck manifests image multiarch walkthrough bench)
APT_PACKAGES=(podman runc uidmap shellcheck qemu-user-static wrk iproute2)
RUST_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

log() { printf '\n== %s\n' "$*"; }
die() { printf 'test.sh: error: %s\n' "$*" >&2; exit "${2:-1}"; }

usage() { sed -n '2,/^set -o/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

missing_commands() {
  local -a missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v shellcheck >/dev/null || missing+=(shellcheck)
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v kubectl >/dev/null || missing+=(kubectl)
  command -v prlimit >/dev/null || missing+=(util-linux)
  command -v python3 >/dev/null || missing+=(python3)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v ss >/dev/null || missing+=(iproute2)
  printf '%s\n' "${missing[@]}"
}

missing_targets() {
  local installed t
  installed=$(rustup target list --installed 2>/dev/null || true)
  for t in "${RUST_TARGETS[@]}"; do
    grep -qx "$t" <<<"$installed" || echo "$t"
  done
}

prepare() {
  command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs)"
  local -a cmds targets
  mapfile -t cmds < <(missing_commands)
  mapfile -t targets < <(missing_targets)
  if [ "${#cmds[@]}" -eq 0 ] && [ "${#targets[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    die "missing: ${cmds[*]} ${targets[*]} — install them (apt-get install ${APT_PACKAGES[*]}; rustup target add ${RUST_TARGETS[*]}) or run as root"
  fi
  if [ "${#cmds[@]}" -gt 0 ]; then
    echo "installing: ${APT_PACKAGES[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
    command -v kubectl >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null ||
      die "kubectl is missing and could not be installed"
  fi
  if [ "${#targets[@]}" -gt 0 ]; then
    command -v rustup >/dev/null || die "rustup is missing: cannot add ${targets[*]}"
    rustup target add "${targets[@]}"
  fi
}

step_rust() {
  (cd "$ROOT" && cargo build --release --locked && cargo test --locked)
  if cargo fmt --version >/dev/null 2>&1; then
    (cd "$ROOT" && cargo fmt --all -- --check)
  fi
}

step_shellcheck() {
  local -a files
  mapfile -t files < <(cd "$ROOT" && git ls-files -co --exclude-standard 'scripts/*' 'tests/*.sh' '.ci/*' |
    while read -r f; do head -n1 "$f" | grep -qE '^#!.*(ba)?sh' && echo "$f"; done)
  (cd "$ROOT" && shellcheck -x "${files[@]}")
  echo "shellcheck: ${#files[@]} scripts clean"
}

step_manifests() { bash "$ROOT/tests/manifests.sh"; }
step_image() { bash "$ROOT/tests/image.sh"; }
step_multiarch() { bash "$ROOT/tests/multiarch.sh"; }
step_walkthrough() { bash "$ROOT/tests/walkthrough.sh"; }
step_bench() { bash "$ROOT/tests/bench-smoke.sh"; }

main() {
  local only="" do_prepare=0
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --prepare) do_prepare=1 ;;
      --only) [ $# -ge 2 ] || die "--only needs a value" 2; only=$2; shift ;;
      --only=*) only=${1#--only=} ;;
      *) die "unknown option $1 (see --help)" 2 ;;
    esac
    shift
  done
  prepare
  [ "$do_prepare" -eq 0 ] || exit 0

  local -a run=("${STEPS[@]}") failed=()
  if [ -n "$only" ]; then
    IFS=, read -r -a run <<<"$only"
    local s
    for s in "${run[@]}"; do
      [[ " ${STEPS[*]} " == *" $s "* ]] || die "unknown step '$s' (steps: ${STEPS[*]})" 2
    done
  fi
  local passed=0 s
  for s in "${run[@]}"; do
    log "$s"
    if "step_$s"; then
      passed=$((passed + 1))
    else
      failed+=("$s")
      echo "!! step $s failed"
    fi
  done
  log "summary"
  [ "${#failed[@]}" -eq 0 ] || echo "failed steps: ${failed[*]}"
  echo "${passed} passed, ${#failed[@]} failed"
  [ "${#failed[@]}" -eq 0 ]
}

main "$@"
