#!/usr/bin/env bash
# bench.sh — measure hello-path-rs (and optionally a peer server in the same run) and print a
# markdown table: sizes, start to first 200, idle cost, throughput and p99 with wrk, idle
# keep-alive connections, reload latency, pipelined and refused floods, stop as PID 1, fd
# and thread exhaustion.
#
# Builds the static release binary and the FROM-scratch image (scripts/build-image.sh), then
# measures on loopback (127.0.0.1) only. Each figure is the median of several runs with the
# min–max beside it; each target is marked ok / MISSED (timing goals live here, not in tests).
# The measurements are scripts/lib/bench/ (shell) and bench/ (the measuring helper, Python:
# `python3 -m bench`, which also writes the table; bench/rows.py lists its rows).
#
# Usage:
#   scripts/bench.sh [--quick] [--compare CMD|go] [--write-results] [--no-image]
#                    [--binary PATH] [--install]
#   scripts/bench.sh --nudger [--quick] [--write-results] [--no-image] [--install]
#
#   --nudger         measure the nudger instead (a section of its own): its image size, and
#                    the static binary against the fake API server of tests/nudger.sh over
#                    TLS serving 1,000 Secrets and 1,000 pods: start → Ready, idle RSS, CPU,
#                    wake-ups and threads, watch event → last patch and change → last patch
#                    (10 changes of a Secret mounted by 5 pods), beside Stakater Reloader's
#                    published figures (bench/nudger.py names where each comes from);
#                    --write-results writes its own block of bench/RESULTS.md. About 30 s.
#   --quick          fewer runs and shorter wrk runs (a smoke run, about a minute)
#   --compare CMD    measure CMD too, in the same run, and print ours/peer ratios. CMD is a
#                    command string split on spaces (no quoting); the bench appends
#                    `--mysecret 4321 --listen-addr 127.0.0.1:PORT`.
#   --compare go     shorthand: build bench/peer-go (a stand-in for hello-path-go written for
#                    this project, NOT the original) with `go build`, CGO_ENABLED=0, use it as
#                    CMD, and build a FROM-scratch image of it for the container rows
#   --write-results  write the generated part of bench/RESULTS.md (between its markers)
#   --no-image       skip the image build and the container rows (no podman needed)
#   --binary PATH    measure this hello-path-rs binary instead of building one (e.g. a
#                    patched build); implies --no-image
#   --install        as root, apt-get install missing tools (wrk, python3, util-linux,
#                    podman, golang-go) instead of failing
#   -h, --help       show this help
#
# Environment (defaults in brackets):
#   IMAGE               our image reference [localhost/hello-path-rs:0.1.0]
#   NUDGER_IMAGE        the nudger's, with --nudger [localhost/hello-path-nudger:0.1.0]
#   PODMAN_GLOBAL_FLAGS global podman flags, e.g. "--runtime runc", and
#   PODMAN_RUN_FLAGS    extra `podman run` flags, e.g. "--ulimit nofile=1024:1024": overrides
#                       of what the bench finds out by starting our image once (where the
#                       engine cannot set its default rlimits or its runtime fails, it
#                       falls back on this process's own limits and runc, and says so:
#                       scripts/lib/engine.sh) [found out]
#   CARGO               cargo command [cargo]
#   GO                  go command for --compare go [go]
#   PEER_NOLOG_ARGS     arguments that turn the peer's per-request logging off; empty means
#                       the peer has no such switch and the no-logging rows show no peer
#                       [-log-requests=false with --compare go, else empty]
#   BENCH_RESULTS       the file --write-results updates [<repo>/bench/RESULTS.md]
#   BENCH_KEEP          1 = keep the scratch directory with the server logs [0]
#
# Exit status: 0 measured (targets MISSED included), 1 a measurement or build failed or a
# tool is missing, 2 bad arguments.
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly SECRET=4321
readonly PEER_IMAGE=localhost/hello-path-rs-bench-peer:go
readonly PIDS_LIMIT=32 PIDS_CONNS=64 FD_LIMIT=64 FD_CONNS=100

QUICK=false
NUDGER=false
COMPARE=""
WRITE_RESULTS=false
WITH_IMAGE=true
INSTALL=false

IMAGE_REF=${IMAGE:-localhost/hello-path-rs:0.1.0}
WORK=""
BIN=""
BIN_NOTE=""
BIN_OVERRIDE=""
PEER_BIN=""
PEER_LABEL=""
PEER_HAS_IMAGE=false
PEER_IMAGE_BUILT=false
FAILURES=0
OUR_CMD=()
PEER_CMD=()
PEER_NOLOG=()
PIDS=()
CONTAINERS=()
LAST_PID=""

# Runs, durations: set by set_profile.
STARTS=20
IDLE_SECONDS=10
WRK_RUNS=5
WRK_SECONDS=3
RELOAD_RUNS=10
STOP_RUNS=3
FD_RUNS=5
REFUSALS=4000

# The container engine: podman, whose CLI the container rows use.
ENGINE=podman
# shellcheck source=scripts/lib/engine.sh
source "${ROOT}/scripts/lib/engine.sh"
# shellcheck source=scripts/lib/bench/run.sh
source "${ROOT}/scripts/lib/bench/run.sh"
# shellcheck source=scripts/lib/bench/build.sh
source "${ROOT}/scripts/lib/bench/build.sh"
# shellcheck source=scripts/lib/bench/measure.sh
source "${ROOT}/scripts/lib/bench/measure.sh"
# shellcheck source=scripts/lib/bench/containers.sh
source "${ROOT}/scripts/lib/bench/containers.sh"

usage() {
  sed -n '2,/^set -o/{/^set -o/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
usage_error() {
  printf 'bench: error: %s\n' "$*" >&2
  printf "Try 'scripts/bench.sh --help'.\n" >&2
  exit 2
}

parse_args() {
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --quick) QUICK=true ;;
      --nudger) NUDGER=true ;;
      --write-results) WRITE_RESULTS=true ;;
      --no-image) WITH_IMAGE=false ;;
      --binary)
        if (($# < 2)) || [[ -z "$2" ]]; then usage_error "--binary needs a path"; fi
        BIN_OVERRIDE=$2 WITH_IMAGE=false
        shift
        ;;
      --binary=*)
        BIN_OVERRIDE=${1#--binary=} WITH_IMAGE=false
        [[ -n "${BIN_OVERRIDE}" ]] || usage_error "--binary needs a path"
        ;;
      --install) INSTALL=true ;;
      --compare)
        if (($# < 2)) || [[ -z "$2" ]]; then usage_error "--compare needs a command"; fi
        COMPARE=$2
        shift
        ;;
      --compare=*)
        COMPARE=${1#--compare=}
        [[ -n "${COMPARE}" ]] || usage_error "--compare needs a command"
        ;;
      *) usage_error "unknown argument: $1" ;;
    esac
    shift
  done
}

# The nudger's section (--nudger): build, measure (bench/nudger.py), report, write.
nudger_main() {
  [[ -z "${COMPARE}" && -z "${BIN_OVERRIDE}" ]] || usage_error "--nudger takes neither --compare nor --binary"
  command -v "${CARGO:-cargo}" >/dev/null || die "cargo is missing: install Rust (https://rustup.rs)"
  local -a missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v openssl >/dev/null || missing+=(openssl)
  if [[ "${WITH_IMAGE}" == true ]] && ! command -v podman >/dev/null; then missing+=(podman); fi
  if ((${#missing[@]} > 0)); then
    [[ "${INSTALL}" == true ]] || die "missing: ${missing[*]} — install them or use --install"
    install_packages "${missing[@]}"
  fi
  trap cleanup EXIT
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
  local triple image_ref=${NUDGER_IMAGE:-localhost/hello-path-nudger:0.1.0} size="" out
  case "$(uname -m)" in
    aarch64 | arm64) triple=aarch64-unknown-linux-musl ;;
    *) triple=x86_64-unknown-linux-musl ;;
  esac
  if [[ "${WITH_IMAGE}" == true ]]; then
    engine_global_flags
    out=$(NUDGER_IMAGE="${image_ref}" CONTAINER_ENGINE=podman bash "${ROOT}/scripts/build-image.sh" --only nudger) \
      || die "scripts/build-image.sh --only nudger failed"
    size=$(awk '{ print $3 }' <<<"${out}")
  else
    log "cargo build --release -p hello-path-nudger --target ${triple}"
    # shellcheck disable=SC2086 # CARGO may hold a command with arguments
    ${CARGO:-cargo} build --release -p hello-path-nudger --target "${triple}" \
      --manifest-path "${ROOT}/Cargo.toml" >&2 || die "cargo build of hello-path-nudger failed"
  fi
  local bin="${CARGO_TARGET_DIR:-${ROOT}/target}/${triple}/release/hello-path-nudger" idle=10 runs=10
  [[ "${QUICK}" == false ]] || idle=3 runs=3
  mkdir -p "${WORK}/nudger"
  log "measuring ${bin#"${ROOT}"/} against the fake API server (1,000 Secrets, 1,000 pods)"
  {
    printf 'Measured %s at revision %s on %s.\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
      "$(git -C "${ROOT}" describe --always --dirty 2>/dev/null || echo unknown)" "$(machine)"
    # shellcheck disable=SC2016 # the backquotes are markdown, not a command
    printf 'Binary: `%s` (%s bytes).%s\n\n' "${bin#"${ROOT}"/}" "$(stat -c %s "${bin}")" \
      "$([[ "${QUICK}" == false ]] || echo ' Quick run (--quick): fewer changes, a shorter idle.')"
    py nudger --binary "${bin}" --fake "${ROOT}/tests/lib/fake_apiserver.py" --work "${WORK}/nudger" \
      --idle "${idle}" --runs "${runs}" ${size:+--image-size "${size}" --image-ref "${image_ref}"}
  } >"${WORK}/nudger.md" || { cat "${WORK}/nudger.md" >&2; die "the nudger's measurements failed"; }
  cat "${WORK}/nudger.md"
  if [[ "${WRITE_RESULTS}" == true ]]; then
    local results=${BENCH_RESULTS:-${ROOT}/bench/RESULTS.md}
    py splice-nudger "${results}" "${WORK}/nudger.md" || die "cannot write ${results}"
    log "wrote ${results}"
  fi
}

set_profile() {
  if [[ "${QUICK}" == true ]]; then
    STARTS=5 IDLE_SECONDS=3 WRK_RUNS=1 WRK_SECONDS=1 RELOAD_RUNS=3 STOP_RUNS=1 FD_RUNS=1
    REFUSALS=1000
  fi
}

# Kills only the processes and containers this script started, removes its scratch files.
cleanup() {
  local pid name
  for pid in "${PIDS[@]}"; do
    if kill -0 "${pid}" 2>/dev/null; then kill -KILL "${pid}" 2>/dev/null || true; fi
  done
  for name in "${CONTAINERS[@]}"; do
    engine rm -f -t 0 "${name}" >/dev/null 2>&1 || true
  done
  if [[ "${PEER_IMAGE_BUILT}" == true ]]; then
    engine rmi -f "${PEER_IMAGE}" >/dev/null 2>&1 || true
  fi
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
      log "kept ${WORK}"
    else
      rm -rf -- "${WORK}"
    fi
  fi
}

machine() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
  printf '%s cores (nproc), %s, Linux %s' "$(nproc)" "${cpu:-unknown CPU}" "$(uname -r)"
}

report() {
  local peer=${PEER_LABEL:-none}
  py table "${WORK}/samples.tsv" \
    --peer "${peer}" \
    --quick "${QUICK}" \
    --machine "$(machine)" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --revision "$(git -C "${ROOT}" describe --always --dirty 2>/dev/null || echo unknown)" \
    --binary "${BIN#"${ROOT}"/}${BIN_NOTE:+ (${BIN_NOTE})}" \
    --runs "starts=${STARTS} idle=${IDLE_SECONDS}s wrk=${WRK_RUNS}x${WRK_SECONDS}s reload=${RELOAD_RUNS} stop=${STOP_RUNS} fd=${FD_RUNS} refusals=${REFUSALS}" \
    --commands "${WORK}/commands.txt" \
    --wrk-errors "${WORK}/wrk-errors.txt" \
    --failures "${WORK}/failures.txt" >"${WORK}/report.md"
  cat "${WORK}/report.md"
  if [[ "${WRITE_RESULTS}" == true ]]; then
    local results=${BENCH_RESULTS:-${ROOT}/bench/RESULTS.md}
    py splice "${results}" "${WORK}/report.md" || die "cannot write ${results}"
    log "wrote ${results}"
  fi
}

main() {
  parse_args "$@"
  if [[ "${NUDGER}" == true ]]; then
    nudger_main
    return
  fi
  set_profile
  check_tools
  engine_global_flags
  # A MYSECRET in the caller's environment must not reach the servers.
  unset MYSECRET
  trap cleanup EXIT
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
  : >"${WORK}/samples.tsv"
  : >"${WORK}/commands.txt"

  build_ours
  if [[ "${WITH_IMAGE}" == true ]]; then
    containers_setup
  fi
  setup_peer
  # The builds leave dirty pages behind: write them out now rather than during the timings.
  sync || true
  measure_start
  measure_idle_and_keepalive
  measure_wrk
  measure_reload
  measure_floods
  measure_fd
  if [[ "${WITH_IMAGE}" == true ]]; then
    measure_pid1
    measure_pids
  fi
  report
  if ((FAILURES > 0)); then
    log "${FAILURES} measurement(s) failed: see the table"
    exit 1
  fi
}

main "$@"
