#!/usr/bin/env bash
# The one test command of hello-path-rs.
#
# Builds the binary, runs the Rust tests (unit + integration against the real binary), then
# the checks of the other parts: shellcheck on every script, ruff and unit tests on the
# bench's Python, the manifests (kustomize + schema validation), the container image in a
# real engine, and the local walkthrough end to end.
#
# Usage: scripts/test.sh [--prepare] [--only STEP[,STEP...]]
#   --prepare   install what the tests need (as root: apt-get, rustup), then exit
#   --only      run only these steps: rust, shellcheck (and tests/executables.sh: every
#               script the docs name runs as typed), python (ruff and the unit tests of
#               bench/), manifests, nudge (scripts/nudge.sh against a fake API server),
#               nudger (hello-path-nudger: its unit tests, clippy, and tests/nudger.sh
#               against the fake API server over TLS), image, multiarch, walkthrough (the scenario scripts: tests/timeline.sh,
#               cleanup.sh, walkthrough.sh), bench (a quick smoke run of scripts/bench.sh,
#               no timing asserted)
#
# Only what the selected steps need is checked: missing prerequisites are installed when
# running as root; otherwise they are named and the run fails (`--only rust` needs cargo and
# prlimit, not podman, qemu or wrk). Environment:
#   CONTAINER_ENGINE   podman (default), or docker/buildah where the image tests support it
#   PODMAN_RUN_FLAGS, PODMAN_GLOBAL_FLAGS   overrides of the `run` and global flags that the
#                      container steps find out (scripts/lib/engine.sh; tests/engine.sh)
#   VENV               virtualenv for the manifest checks and ruff (default: .venv)
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEPS=(rust shellcheck python manifests nudge nudger image multiarch walkthrough bench)
# musl-tools, clang, llvm: the C of the nudger's ring for the musl targets (.cargo/config.toml);
# openssl, curl, prometheus (promtool): tests/nudger.sh.
APT_PACKAGES=(podman runc uidmap shellcheck qemu-user-static wrk iproute2 musl-tools clang llvm
  openssl curl prometheus)
RUST_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

log() { printf '\n== %s\n' "$*"; }
die() { printf 'test.sh: error: %s\n' "$1" >&2; exit "${2:-1}"; }

usage() { sed -n '2,/^set -o/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# needs STEP — what STEP needs, one "COMMAND PACKAGE..." per line (the apt packages that
# provide it); cargo is checked apart (rustup, not apt).
needs() {
  case "$1" in
    rust) printf '%s\n' 'prlimit util-linux' 'unshare util-linux' 'mount mount' ;;
    shellcheck) printf '%s\n' 'shellcheck shellcheck' ;;
    python) printf '%s\n' 'python3 python3' ;;
    manifests) printf '%s\n' 'kubectl kubernetes-client' 'python3 python3' ;;
    nudge) printf '%s\n' 'kubectl kubernetes-client' 'python3 python3' ;;
    nudger) printf '%s\n' 'python3 python3' 'openssl openssl' 'curl curl' 'promtool prometheus' ;;
    image)
      printf '%s\n' 'podman podman uidmap' 'runc runc' 'curl curl' 'musl-gcc musl-tools' \
        'python3 python3' 'openssl openssl'
      ;;
    multiarch)
      printf '%s\n' 'podman podman uidmap' 'runc runc' 'qemu-aarch64-static qemu-user-static' \
        'musl-gcc musl-tools' 'clang clang' 'llvm-ar llvm' 'python3 python3' 'openssl openssl'
      ;;
    walkthrough) printf '%s\n' 'setsid util-linux' 'python3 python3' ;;
    bench) printf '%s\n' 'python3 python3' 'wrk wrk' 'prlimit util-linux' 'ss iproute2' ;;
  esac
}
# needs_cargo STEP — STEP builds Rust code (every step but shellcheck, python, manifests
# and nudge).
needs_cargo() { [[ "$1" != shellcheck && "$1" != python && "$1" != manifests && "$1" != nudge ]]; }
# targets_of STEP — the Rust targets STEP builds for: the image one for this machine's
# architecture, multiarch both.
targets_of() {
  case "$1" in
    image)
      case "$(uname -m)" in
        aarch64 | arm64) echo aarch64-unknown-linux-musl ;;
        *) echo x86_64-unknown-linux-musl ;;
      esac
      ;;
    multiarch) printf '%s\n' "${RUST_TARGETS[@]}" ;;
  esac
}

# missing_commands STEP... — "COMMAND PACKAGE" for each command those steps need and lack.
missing_commands() {
  local s cmd pkg
  for s in "$@"; do needs "$s"; done | sort -u | while read -r cmd pkg; do
    command -v "$cmd" >/dev/null || echo "$cmd $pkg"
  done
}

# missing_targets STEP... — the Rust targets those steps need and lack.
missing_targets() {
  local installed t s
  installed=$(rustup target list --installed 2>/dev/null || true)
  for s in "$@"; do targets_of "$s"; done | sort -u | while read -r t; do
    grep -qx "$t" <<<"$installed" || echo "$t"
  done
}

# prepare STEP... — checks what those steps need; as root installs what is missing (apt,
# rustup), otherwise names it and fails. With --prepare: every step, and the full
# APT_PACKAGES list when anything is missing.
prepare() {
  local -a steps=("$@") cmds=() pkgs=() targets
  local s line need_cargo=false
  for s in "${steps[@]}"; do
    if needs_cargo "$s"; then need_cargo=true; fi
  done
  if [ "$need_cargo" = true ]; then
    command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs)"
  fi
  local -a more
  while read -r line; do
    [ -n "$line" ] || continue
    cmds+=("${line%% *}")
    read -r -a more <<<"${line#* }"
    pkgs+=("${more[@]}")
  done < <(missing_commands "${steps[@]}")
  mapfile -t targets < <(missing_targets "${steps[@]}")
  if [ "${#cmds[@]}" -eq 0 ] && [ "${#targets[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    local what=("${cmds[@]}" "${targets[@]}") how=""
    [ "${#pkgs[@]}" -eq 0 ] || how="apt-get install ${pkgs[*]}"
    [ "${#targets[@]}" -eq 0 ] || how="${how:+${how}; }rustup target add ${targets[*]}"
    die "missing for ${steps[*]}: ${what[*]} — install them (${how}) or run as root"
  fi
  if [ "${#cmds[@]}" -gt 0 ]; then
    local -a install=("${pkgs[@]}")
    if [ "${#steps[@]}" -eq "${#STEPS[@]}" ]; then
      install=("${APT_PACKAGES[@]}")
    fi
    # kubectl: tried apart below, the package is not in every distribution.
    mapfile -t install < <(printf '%s\n' "${install[@]}" | grep -vx kubernetes-client | sort -u)
    echo "installing: ${install[*]}"
    apt-get update -qq
    if [ "${#install[@]}" -gt 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${install[@]}" >/dev/null
    fi
    if [[ " ${cmds[*]} " == *" kubectl "* ]]; then
      command -v kubectl >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null ||
        die "kubectl is missing and could not be installed"
    fi
  fi
  if [ "${#targets[@]}" -gt 0 ]; then
    command -v rustup >/dev/null || die "rustup is missing: cannot add ${targets[*]}"
    rustup target add "${targets[@]}"
  fi
}

step_rust() {
  (cd "$ROOT" && cargo build --release --locked && cargo test --locked)
  # The vendored tiny_http's own unit tests (its request parsing of patch 8, among others);
  # it is no workspace member, so they run on their own (its lock file: .gitignore).
  (cd "$ROOT" && cargo test --lib --manifest-path vendor/tiny_http/Cargo.toml \
    --target-dir target/vendor-tiny-http)
  if cargo fmt --version >/dev/null 2>&1; then
    (cd "$ROOT" && cargo fmt --all -- --check)
  fi
}

step_shellcheck() {
  local -a files
  mapfile -t files < <(cd "$ROOT" && git ls-files -co --exclude-standard 'scripts/*' 'tests/*.sh' 'tests/fixtures/*' '.ci/*' |
    while read -r f; do head -n1 "$f" | grep -qE '^#!.*(ba)?sh' && echo "$f"; done)
  (cd "$ROOT" && shellcheck -x "${files[@]}")
  echo "shellcheck: ${#files[@]} scripts clean"
  run_tests executables.sh
}

# run_tests FILE... — tests/FILE, each in turn (every one runs); fails when one failed.
run_tests() {
  local f rc=0
  for f in "$@"; do
    bash "$ROOT/tests/$f" || rc=1
  done
  return "$rc"
}

step_python() { run_tests python.sh; }
step_manifests() { run_tests manifests.sh; }
step_nudge() { run_tests nudge.sh; }
# The nudger: a workspace member that `cargo test` at the root leaves out (the service is the
# default member); its unit tests, clippy, then the binary against the fake API server.
step_nudger() {
  (cd "$ROOT" && cargo build --locked -p hello-path-nudger && cargo test --locked -p hello-path-nudger)
  if cargo clippy --version >/dev/null 2>&1; then
    (cd "$ROOT" && cargo clippy --locked -p hello-path-nudger --all-targets -- -D warnings)
  fi
  NUDGER_BIN="$ROOT/target/debug/hello-path-nudger" run_tests nudger.sh
}
step_image() { run_tests engine.sh image.sh; }
step_multiarch() { run_tests multiarch.sh; }
step_walkthrough() { run_tests timeline.sh cleanup.sh walkthrough.sh; }
step_bench() { run_tests bench-smoke.sh; }

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
  if [ "$do_prepare" -eq 1 ]; then
    prepare "${STEPS[@]}"
    exit 0
  fi

  local -a run=("${STEPS[@]}") failed=()
  if [ -n "$only" ]; then
    IFS=, read -r -a run <<<"$only"
    local s
    for s in "${run[@]}"; do
      [[ " ${STEPS[*]} " == *" $s "* ]] || die "unknown step '$s' (steps: ${STEPS[*]})" 2
    done
  fi
  prepare "${run[@]}"
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
