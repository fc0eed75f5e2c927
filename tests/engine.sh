#!/usr/bin/env bash
# engine.sh — the container fallback of scripts/lib/engine.sh, against a fake podman
# (tests/fixtures/fake-engine) that fails as real engines do on such machines:
#
#   1. a container starts as it is: no flag added, nothing said;
#   2. the engine cannot set its default rlimits: retried once with this process's own
#      limits (ulimit -Sn:-Hn, -Su:-Hu, nproc at most pid_max), said in one line;
#   3. the OCI runtime (crun) fails: retried with --runtime runc too (runc on PATH);
#   4. both at once: one retry that fixes both;
#   5. PODMAN_RUN_FLAGS / PODMAN_GLOBAL_FLAGS set: used as given, nothing found out;
#   6. another failure (no such image), or a retry that fails too: no flag kept, the reason
#      said, status 1.
#
# Usage: tests/engine.sh        (no options; a second)
# Prints `ok - ...` / `not ok - ...` lines and ends with `N passed, M failed`.
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
# shellcheck source=tests/lib/tap.sh
source "${ROOT}/tests/lib/tap.sh"
WORK=""

cleanup() {
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then rm -rf -- "${WORK}"; fi
}

# detect FAIL [VAR=VALUE...] — engine_detect_run with the fake failing as FAIL says, in a
# subshell of its own; prints rc=..., global=..., run=..., note=..., calls=N.
detect() {
  local fail=$1
  shift
  : >"${WORK}/calls"
  # shellcheck disable=SC2016 # expanded by the inner bash
  env -u PODMAN_RUN_FLAGS -u PODMAN_GLOBAL_FLAGS FAKE_FAIL="${fail}" FAKE_CALLS="${WORK}/calls" \
    PATH="${WORK}/bin:${PATH}" "$@" bash -c '
    set -o errexit -o nounset -o pipefail
    source "$1/scripts/lib/engine.sh"
    ENGINE=$2/bin/podman
    engine_global_flags
    rc=0
    engine_detect_run localhost/hello-path-rs:0.1.0 --version || rc=$?
    printf "rc=%s\nglobal=%s\nrun=%s\nnote=%s\n" "${rc}" "${ENGINE_GLOBAL[*]}" "${ENGINE_RUN[*]}" "${ENGINE_NOTE}"
    printf "calls=%s\n" "$(grep -cE "(^| )run " "$2/calls" || true)"' _ "${ROOT}" "${WORK}"
}

# value OUTPUT KEY — the value of KEY= in detect's OUTPUT.
value() { sed -n "s/^$2=//p" <<<"$1"; }

main() {
  (($# == 0)) || {
    printf 'usage: tests/engine.sh (no arguments)\n' >&2
    exit 2
  }
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/hello-path-test-engine.XXXXXX")
  trap cleanup EXIT
  mkdir -p "${WORK}/bin"
  ln -s "${ROOT}/tests/fixtures/fake-engine" "${WORK}/bin/podman"
  ln -s "$(command -v true)" "${WORK}/bin/runc"
  local out nofile nproc pid_max limits
  pid_max=$(cat /proc/sys/kernel/pid_max)
  nofile="$(ulimit -Sn):$(ulimit -Hn)"
  nproc="$(ulimit -Su):$(ulimit -Hu)"
  nproc=$(awk -F: -v m="${pid_max}" '{ for (i = 1; i <= 2; i++) if ($i == "unlimited" || $i + 0 > m) $i = m; print $1 ":" $2 }' OFS=: <<<"${nproc}")
  limits="--ulimit nofile=${nofile} --ulimit nproc=${nproc}"

  out=$(detect "")
  check "a container that starts: no flag, nothing said, one run" \
    test "$(value "${out}" rc)|$(value "${out}" run)|$(value "${out}" note)|$(value "${out}" calls)" = "0|||1"

  out=$(detect rlimit)
  check "rlimits refused: retried with this process's limits (${limits})" \
    test "$(value "${out}" rc)|$(value "${out}" run)|$(value "${out}" global)" = "0|${limits}|"
  check "rlimits refused: said in one line, with the cause and the flags" \
    grep -qE '^note=podman could not start a container here \(error setting rlimit type 7: operation not permitted\); retried with --ulimit nofile=[^ ]+ --ulimit nproc=[^ ]+ \(' <<<"${out}"
  check "rlimits refused: two runs, the probe and one retry" test "$(value "${out}" calls)" = 2

  out=$(detect runtime)
  check "crun fails: retried with --runtime runc and this process's limits" \
    test "$(value "${out}" rc)|$(value "${out}" global)|$(value "${out}" run)" = "0|--runtime runc|${limits}"
  check "crun fails: the line says runc" grep -q '^note=.*crun: writing file .*; runc for the runtime' <<<"${out}"

  out=$(detect both)
  check "crun fails and runc's rlimits would too: one retry fixes both" \
    test "$(value "${out}" rc)|$(value "${out}" global)|$(value "${out}" run)|$(value "${out}" calls)" = "0|--runtime runc|${limits}|2"

  out=$(detect rlimit PODMAN_RUN_FLAGS="--ulimit nofile=1024:1024")
  check "PODMAN_RUN_FLAGS set: used as given, no run, nothing said" \
    test "$(value "${out}" rc)|$(value "${out}" run)|$(value "${out}" note)|$(value "${out}" calls)" = "0|--ulimit nofile=1024:1024||0"
  out=$(detect runtime PODMAN_GLOBAL_FLAGS="--runtime crun")
  check "PODMAN_GLOBAL_FLAGS set: its runtime is kept (no runc added)" \
    test "$(value "${out}" global)" = "--runtime crun"

  out=$(detect image)
  check "an image that is not there: not retried, status 1, the reason said" \
    test "$(value "${out}" rc)|$(value "${out}" run)|$(value "${out}" calls)" = "1||1" -a \
    -n "$(grep '^note=podman cannot start localhost/hello-path-rs:0.1.0: .*image not known' <<<"${out}")"
  out=$(detect always)
  check "a retry that fails too: no flag kept, status 1, said so" \
    test "$(value "${out}" rc)|$(value "${out}" run)|$(value "${out}" global)|$(value "${out}" calls)" = "1|||2" -a \
    -n "$(grep '^note=.*not even with --ulimit' <<<"${out}")"
  tap_summary
}

main "$@"
