#!/usr/bin/env bash
# bench.sh — measure hello-path-rs (and optionally a peer server in the same run) and print a
# markdown table: sizes, start to first 200, idle cost, throughput and p99 with wrk, idle
# keep-alive connections, reload latency, stop as PID 1, fd and thread exhaustion.
#
# Builds the static release binary and the FROM-scratch image (scripts/build-image.sh), then
# measures on loopback (127.0.0.1) only. Each figure is the median of several runs with the
# min–max beside it; each target is marked ok / MISSED (timing goals live here, not in tests).
#
# Usage:
#   scripts/bench.sh [--quick] [--compare CMD|go] [--write-results] [--no-image]
#                    [--binary PATH] [--install]
#
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
#   PODMAN_GLOBAL_FLAGS extra global podman flags, e.g. "--runtime runc" [none]
#   PODMAN_RUN_FLAGS    extra `podman run` flags, e.g. "--ulimit nofile=1024:1024" [none]
#                       (on the CI machine: `. .ci/podman-env.sh` first)
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
PODMAN_G=()
PODMAN_R=()
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

set_profile() {
  if [[ "${QUICK}" == true ]]; then
    STARTS=5 IDLE_SECONDS=2 WRK_RUNS=1 WRK_SECONDS=1 RELOAD_RUNS=3 STOP_RUNS=1 FD_RUNS=1
  fi
}

# Kills only the processes and containers this script started, removes its scratch files.
cleanup() {
  local pid name
  for pid in "${PIDS[@]}"; do
    if kill -0 "${pid}" 2>/dev/null; then kill -KILL "${pid}" 2>/dev/null || true; fi
  done
  for name in "${CONTAINERS[@]}"; do
    podman "${PODMAN_G[@]}" rm -f -t 0 "${name}" >/dev/null 2>&1 || true
  done
  if [[ "${PEER_IMAGE_BUILT}" == true ]]; then
    podman "${PODMAN_G[@]}" rmi -f "${PEER_IMAGE}" >/dev/null 2>&1 || true
  fi
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
      log "kept ${WORK}"
    else
      rm -rf -- "${WORK}"
    fi
  fi
}

# ---------------------------------------------------------------- tools and builds

install_packages() {
  [[ "$(id -u)" == 0 ]] || die "missing: $* — install them (apt-get install $*) or run as root with --install"
  command -v apt-get >/dev/null || die "missing: $* — and apt-get is not available to install them"
  log "installing $*"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

check_tools() {
  local -a missing=() packages=()
  command -v "${CARGO:-cargo}" >/dev/null || die "cargo is missing: install Rust (https://rustup.rs)"
  command -v python3 >/dev/null || { missing+=(python3); packages+=(python3); }
  command -v wrk >/dev/null || { missing+=(wrk); packages+=(wrk); }
  command -v prlimit >/dev/null || { missing+=(prlimit); packages+=(util-linux); }
  if [[ "${WITH_IMAGE}" == true ]] && ! command -v podman >/dev/null; then
    missing+=(podman); packages+=(podman)
  fi
  if [[ "${COMPARE}" == go ]] && ! command -v "${GO:-go}" >/dev/null; then
    missing+=(go); packages+=(golang-go)
  fi
  ((${#missing[@]} == 0)) && return 0
  if [[ "${INSTALL}" == true ]]; then
    install_packages "${packages[@]}"
  else
    die "missing tools: ${missing[*]} (Debian packages: ${packages[*]}; or pass --install as root)"
  fi
}

host_triple() {
  case "$(uname -m)" in
    x86_64 | amd64) echo x86_64-unknown-linux-musl ;;
    aarch64 | arm64) echo aarch64-unknown-linux-musl ;;
    *) die "unsupported machine $(uname -m)" ;;
  esac
}

target_dir() { echo "${CARGO_TARGET_DIR:-${ROOT}/target}"; }

# Builds the static binary (and with the image, the image); sets BIN.
build_ours() {
  local triple out size
  triple=$(host_triple)
  if [[ -n "${BIN_OVERRIDE}" ]]; then
    [[ -x "${BIN_OVERRIDE}" ]] || die "not an executable: ${BIN_OVERRIDE}"
    BIN=$(cd -- "$(dirname -- "${BIN_OVERRIDE}")" && pwd)/$(basename -- "${BIN_OVERRIDE}")
    BIN_NOTE="given with --binary, not built by this run"
  elif [[ "${WITH_IMAGE}" == true ]]; then
    log "building the binary and ${IMAGE_REF} (scripts/build-image.sh; log in the scratch dir)"
    record_cmd "scripts/build-image.sh --image ${IMAGE_REF}"
    out=$("${ROOT}/scripts/build-image.sh" --image "${IMAGE_REF}" 2>"${WORK}/build.log") || {
      tail -n 20 "${WORK}/build.log" >&2
      die "scripts/build-image.sh failed"
    }
    # Its last line: REF PLATFORM SIZE bytes (N kB)
    size=$(awk 'END { print $3 }' <<<"${out}")
    [[ "${size}" =~ ^[0-9]+$ ]] || die "cannot read the image size from: ${out}"
    sample image_size rs "${size}"
    BIN="$(target_dir)/${triple}/release/hello-path-rs"
  else
    log "building the binary (cargo build --release --target ${triple})"
    record_cmd "cargo build --release --target ${triple}"
    # shellcheck disable=SC2086 # CARGO may hold a command with arguments, e.g. "cargo +stable".
    if ${CARGO:-cargo} build --release --target "${triple}" --manifest-path "${ROOT}/Cargo.toml" \
      >"${WORK}/build.log" 2>&1; then
      BIN="$(target_dir)/${triple}/release/hello-path-rs"
    else
      log "the ${triple} build failed (rustup target add ${triple}?); using the host build"
      record_cmd "cargo build --release"
      # shellcheck disable=SC2086 # as above
      ${CARGO:-cargo} build --release --manifest-path "${ROOT}/Cargo.toml" >>"${WORK}/build.log" 2>&1 || {
        tail -n 20 "${WORK}/build.log" >&2
        die "cargo build --release failed"
      }
      BIN="$(target_dir)/release/hello-path-rs"
      BIN_NOTE="host (glibc) build: the ${triple} target is not installed"
    fi
  fi
  [[ -x "${BIN}" ]] || die "binary not found: ${BIN}"
  sample binary_size rs "$(stat -c %s -- "${BIN}")"
  OUR_CMD=("${BIN}")
}

build_peer_go() {
  local go=${GO:-go}
  log "building the stand-in peer bench/peer-go with ${go} (CGO_ENABLED=0)"
  record_cmd "cd bench/peer-go && CGO_ENABLED=0 ${go} build -trimpath -ldflags='-s -w' -o peer-go ."
  mkdir -p -- "${WORK}/peer"
  (cd "${ROOT}/bench/peer-go" &&
    CGO_ENABLED=0 GOFLAGS=-mod=mod "${go}" build -trimpath -ldflags='-s -w' -o "${WORK}/peer/peer-go" .) \
    >"${WORK}/peer-build.log" 2>&1 || {
    cat "${WORK}/peer-build.log" >&2
    die "go build of bench/peer-go failed"
  }
  PEER_BIN="${WORK}/peer/peer-go"
  PEER_CMD=("${PEER_BIN}")
  PEER_NOLOG=()
  read -r -a PEER_NOLOG <<<"${PEER_NOLOG_ARGS--log-requests=false}"
  PEER_LABEL="peer-go (stand-in for hello-path-go, built from bench/peer-go, $("${go}" version | awk '{print $3}'))"
  PEER_HAS_IMAGE=${WITH_IMAGE}
  if [[ "${WITH_IMAGE}" == true ]]; then
    log "building ${PEER_IMAGE} (FROM scratch, the stand-in only)"
    cat >"${WORK}/peer/Containerfile" <<'EOF'
FROM scratch
COPY peer-go /peer-go
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/peer-go"]
EOF
    record_cmd "podman build --layers=false -f Containerfile -t ${PEER_IMAGE} <dir with peer-go>"
    podman "${PODMAN_G[@]}" build --layers=false -f "${WORK}/peer/Containerfile" -t "${PEER_IMAGE}" \
      "${WORK}/peer" >>"${WORK}/peer-build.log" 2>&1 || {
      tail -n 20 "${WORK}/peer-build.log" >&2
      die "podman build of the peer image failed"
    }
    PEER_IMAGE_BUILT=true
    sample image_size peer "$(podman "${PODMAN_G[@]}" image inspect --format '{{.Size}}' "${PEER_IMAGE}")"
  fi
}

setup_peer() {
  [[ -n "${COMPARE}" ]] || return 0
  if [[ "${COMPARE}" == go ]]; then
    build_peer_go
  else
    read -r -a PEER_CMD <<<"${COMPARE}"
    ((${#PEER_CMD[@]} > 0)) || usage_error "--compare needs a command"
    read -r -a PEER_NOLOG <<<"${PEER_NOLOG_ARGS:-}"
    PEER_LABEL="peer: ${COMPARE}"
    if [[ -f "${PEER_CMD[0]}" ]]; then
      PEER_BIN=${PEER_CMD[0]}
    else
      PEER_BIN=$(command -v "${PEER_CMD[0]}" || true)
    fi
  fi
  if [[ -n "${PEER_BIN}" && -f "${PEER_BIN}" ]]; then
    sample binary_size peer "$(stat -c %s -- "${PEER_BIN}")"
  fi
}

# ---------------------------------------------------------------- samples and helpers

# sample KEY SIDE VALUE: one measured figure (SIDE: rs or peer).
sample() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"${WORK}/samples.tsv"; }

# record_cmd TEXT: a command as run, for the list printed under the table.
record_cmd() {
  local c=${1//"${ROOT}/"/}
  c=${c//"${WORK}"/\$TMP}
  # Ports are picked at run time: one line per command, whatever the port.
  c=$(sed -E 's/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' <<<"${c}")
  grep -qxF -- "${c}" "${WORK}/commands.txt" 2>/dev/null || printf '%s\n' "${c}" >>"${WORK}/commands.txt"
}

# samples_from SIDE FILE: "KEY VALUE" lines → samples.
samples_from() {
  local key val
  while read -r key val; do
    if [[ -n "${key}" ]]; then sample "${key}" "$1" "${val}"; fi
  done <"$2"
}

fail() {
  log "FAILED: $*"
  FAILURES=$((FAILURES + 1))
  printf '%s\n' "$*" >>"${WORK}/failures.txt"
}

py() {
  BENCH_FD_LIMIT=${FD_LIMIT} BENCH_FD_CONNS=${FD_CONNS} BENCH_PIDS_LIMIT=${PIDS_LIMIT} \
    BENCH_PIDS_CONNS=${PIDS_CONNS} python3 "${WORK}/bench.py" "$@"
}

free_port() { py free-port; }

# The command of a side as a string (for the command list).
side_cmd() {
  if [[ "$1" == rs ]]; then echo "${OUR_CMD[*]}"; else echo "${PEER_CMD[*]}"; fi
}

# spawn SIDE LABEL PORT [EXTRA...]: start a server in the background (LAST_PID), output to
# the scratch dir, and wait (bounded) for its first 200 OK.
spawn() {
  local side=$1 label=$2 port=$3
  shift 3
  local -a cmd
  if [[ "${side}" == rs ]]; then cmd=("${OUR_CMD[@]}"); else cmd=("${PEER_CMD[@]}"); fi
  cmd+=("$@" --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}")
  record_cmd "${cmd[*]}"
  "${cmd[@]}" >"${WORK}/${label}.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("${LAST_PID}")
  if ! py wait-200 "${port}" 10 "${LAST_PID}"; then
    log "${label} did not answer 200 within 10 s; its log:"
    tail -n 5 "${WORK}/${label}.log" >&2 || true
    return 1
  fi
}

# spawn_raw LABEL CMD...: start a command in the background (LAST_PID).
spawn_raw() {
  local label=$1
  shift
  record_cmd "$*"
  "$@" >"${WORK}/${label}.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("${LAST_PID}")
}

# forget PID: once reaped, a PID is not ours any more (cleanup must never signal a recycled one).
forget() {
  local i
  local -a keep=()
  for i in "${PIDS[@]}"; do
    [[ "${i}" == "$1" ]] || keep+=("${i}")
  done
  PIDS=("${keep[@]}")
}

# running PID: alive and not a zombie.
running() {
  kill -0 "$1" 2>/dev/null && [[ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# reap PID: the exit status of a child that has ended (REAPED).
REAPED=""
reap() {
  REAPED=0
  wait "$1" 2>/dev/null || REAPED=$?
  forget "$1"
}

# stop PID: SIGTERM, then SIGKILL after 3 s; reaps it.
stop() {
  local pid=$1 i
  kill -TERM "${pid}" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    running "${pid}" || break
    py sleep 0.1
  done
  kill -KILL "${pid}" 2>/dev/null || true
  reap "${pid}"
}

sides() {
  echo rs
  if ((${#PEER_CMD[@]} > 0)); then echo peer; fi
}

now_us() { echo "${EPOCHREALTIME/./}"; }

# ---------------------------------------------------------------- measurements

measure_start() {
  local side port
  for side in $(sides); do
    port=$(free_port)
    log "start → first 200 OK, ${STARTS} starts (${side})"
    local -a cmd
    if [[ "${side}" == rs ]]; then cmd=("${OUR_CMD[@]}"); else cmd=("${PEER_CMD[@]}"); fi
    record_cmd "python3 bench.py start ${STARTS} PORT -- $(side_cmd "${side}") --mysecret ${SECRET} --listen-addr 127.0.0.1:${port}"
    py start "${STARTS}" "${port}" "${WORK}/start-${side}.log" -- "${cmd[@]}" \
      --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}" >"${WORK}/start-${side}.txt" ||
      { fail "start → first 200 (${side})"; continue; }
    local v
    while read -r v; do sample start_200 "${side}" "${v}"; done <"${WORK}/start-${side}.txt"
  done
}

# Idle RSS and CPU of a fresh server of each side (side by side), then the keep-alive flood
# on the same servers.
measure_idle_and_keepalive() {
  local side port
  local -a pids=() ports=() names=()
  for side in $(sides); do
    port=$(free_port)
    spawn "${side}" "idle-${side}" "${port}" || { fail "idle server (${side})"; continue; }
    pids+=("${LAST_PID}") ports+=("${port}") names+=("${side}")
  done
  ((${#pids[@]} > 0)) || return 0
  log "idle RSS and CPU over ${IDLE_SECONDS} s (${names[*]})"
  record_cmd "python3 bench.py idle ${IDLE_SECONDS} PID...   # VmRSS; CPU and wake-ups from /proc/PID/task/*/{schedstat,status}"
  local i=0 pid rss cpu wakeups thr
  if py idle "${IDLE_SECONDS}" "${pids[@]}" >"${WORK}/idle.txt"; then
    # PID RSS_KIB CPU_MS_PER_10S WAKEUPS_PER_S THREADS, one line per server
    while read -r pid rss cpu wakeups thr; do
      sample idle_rss "${names[i]}" "${rss}"
      sample idle_cpu "${names[i]}" "${cpu}"
      sample idle_wakeups "${names[i]}" "${wakeups}"
      sample idle_threads "${names[i]}" "${thr}"
      i=$((i + 1))
    done <"${WORK}/idle.txt"
  else
    fail "idle measurement"
  fi
  for ((i = 0; i < ${#pids[@]}; i++)); do
    log "idle keep-alive connections, 100 then 1000, then closed (${names[i]})"
    record_cmd "python3 bench.py keepalive PID PORT   # 100 then 1000 conns, one GET each, held; closed; then 2 bursts of 100"
    py keepalive "${pids[i]}" "${ports[i]}" >"${WORK}/keepalive-${names[i]}.txt" ||
      fail "keep-alive measurement (${names[i]})"
    samples_from "${names[i]}" "${WORK}/keepalive-${names[i]}.txt"
    stop "${pids[i]}"
  done
}

# wrk_once SIDE MODE CONNS PORT PID
wrk_once() {
  local side=$1 mode=$2 conns=$3 port=$4 pid=$5 out rps p99 requests cpu0 main0 cpu1 main1
  local -a cmd=(wrk -t2 "-c${conns}" "-d${WRK_SECONDS}s" --latency "http://127.0.0.1:${port}/test")
  record_cmd "${cmd[*]}"
  read -r cpu0 main0 < <(py cpu "${pid}") || { fail "${side} ${mode} server is gone before wrk c${conns}"; return 0; }
  # Connections that never get an answer during the run are starved: wrk's figures then
  # describe the other connections only.
  rm -f "${WORK}/ready-starved" "${WORK}/ready-switches"
  py starved "${port}" "${WRK_SECONDS}" "${WORK}/ready-starved" >"${WORK}/starved.txt" &
  local watcher=$!
  PIDS+=("${watcher}")
  # Context switches per request (all the server's threads).
  py switches "${pid}" "${WRK_SECONDS}" "${WORK}/ready-switches" >"${WORK}/switches.txt" &
  local switcher=$!
  PIDS+=("${switcher}")
  # Both watchers loaded before wrk starts: two Python start-ups during the run's first
  # tenth of a second doubled our p99 at 100 connections (1.7 -> 3-4 ms).
  local waited=0
  while [[ ! -e "${WORK}/ready-starved" || ! -e "${WORK}/ready-switches" ]] && ((waited < 100)); do
    sleep 0.05
    waited=$((waited + 1))
  done
  out=$(timeout $((WRK_SECONDS + 20)) "${cmd[@]}" 2>&1) || out="wrk failed: ${out}"
  if wait "${watcher}"; then
    sample "starved_c${conns}_${mode}" "${side}" "$(<"${WORK}/starved.txt")"
  fi
  forget "${watcher}"
  local per_s=""
  if wait "${switcher}"; then per_s=$(<"${WORK}/switches.txt"); fi
  forget "${switcher}"
  [[ "${out}" != "wrk failed: "* ]] || { fail "wrk ${side} ${mode} c${conns}: ${out}"; return 0; }
  read -r cpu1 main1 < <(py cpu "${pid}") || { fail "${side} ${mode} server is gone after wrk c${conns}"; return 0; }
  printf '%s\n' "${out}" >>"${WORK}/wrk-${side}-${mode}-c${conns}.txt"
  read -r rps p99 requests < <(py wrk-parse <<<"${out}") || { fail "cannot parse wrk output (${side} ${mode} c${conns})"; return 0; }
  sample "rps_c${conns}_${mode}" "${side}" "${rps}"
  sample "p99_c${conns}_${mode}" "${side}" "${p99}"
  if ((requests > 0)); then
    # CPU per request in µs: the whole process, and (ours) the main thread that answers all.
    sample "cpu_c${conns}_${mode}" "${side}" "$(((cpu1 - cpu0) * 1000000 / requests / 1000)).$(printf '%01d' $((((cpu1 - cpu0) * 10000 / requests) % 10)))"
    if [[ -n "${per_s}" ]]; then
      sample "switches_c${conns}_${mode}" "${side}" "$(awk -v s="${per_s}" -v r="${rps}" 'BEGIN { printf "%.2f", s / r }')"
    fi
    if [[ "${side}" == rs ]]; then
      sample "main_c${conns}_${mode}" "${side}" "$(((main1 - main0) * 1000 / requests)).$(printf '%01d' $((((main1 - main0) * 10000 / requests) % 10)))"
      sample "mainbusy_c${conns}_${mode}" "${side}" "$(((main1 - main0) * 100 / (WRK_SECONDS * 1000)))"
    fi
  fi
  if grep -qE 'Non-2xx|Socket errors' <<<"${out}"; then
    printf '%s %s c%s: %s\n' "${side}" "${mode}" "${conns}" \
      "$(grep -E 'Non-2xx|Socket errors' <<<"${out}" | tr -s ' ' | tr '\n' ' ')" >>"${WORK}/wrk-errors.txt"
  fi
}

measure_wrk() {
  local side mode port run conns
  local -A port_of=()
  for side in $(sides); do
    for mode in log nolog; do
      local -a extra=()
      if [[ "${mode}" == nolog ]]; then
        if [[ "${side}" == rs ]]; then
          extra=(--log-requests=false)
        elif ((${#PEER_NOLOG[@]} > 0)); then
          extra=("${PEER_NOLOG[@]}")
        else
          continue
        fi
      fi
      port=$(free_port)
      spawn "${side}" "wrk-${side}-${mode}" "${port}" "${extra[@]}" || { fail "wrk server ${side} ${mode}"; continue; }
      port_of["${side}-${mode}"]=${port}
      port_of["${side}-${mode}-pid"]=${LAST_PID}
      # Warm-up: threads, connections, page cache of the log file (not worth it in --quick).
      if [[ "${QUICK}" == false ]]; then
        timeout 20 wrk -t2 -c100 -d1s "http://127.0.0.1:${port}/test" >/dev/null 2>&1 || true
      fi
    done
  done
  log "wrk: ${WRK_RUNS} run(s) of ${WRK_SECONDS} s at 10 and 100 connections, logging on/off, sides interleaved"
  for ((run = 1; run <= WRK_RUNS; run++)); do
    for conns in 10 100; do
      for mode in log nolog; do
        for side in $(sides); do
          [[ -n "${port_of[${side}-${mode}]:-}" ]] || continue
          wrk_once "${side}" "${mode}" "${conns}" "${port_of[${side}-${mode}]}" \
            "${port_of[${side}-${mode}-pid]}"
        done
      done
    done
  done
  local key
  for key in "${!port_of[@]}"; do
    [[ "${key}" == *-pid ]] && stop "${port_of[${key}]}"
  done
  return 0
}

measure_reload() {
  local dir port mode
  for mode in watch sighup post; do
    dir="${WORK}/secret-${mode}"
    py secret-init "${dir}" mysecret "${SECRET}" || { fail "secret dir"; return 0; }
    port=$(free_port)
    local -a extra=(--reload --mysecret-file "${dir}/mysecret" --expected-secret "4321,5678")
    [[ "${mode}" == watch ]] || extra+=(--watch-interval 1h)
    local -a cmd=("${OUR_CMD[@]}" "${extra[@]}" --listen-addr "127.0.0.1:${port}")
    spawn_raw "reload-${mode}" "${cmd[@]}"
    local pid=${LAST_PID}
    if ! py wait-200 "${port}" 10 "${pid}"; then
      fail "reload server (${mode})"
      stop "${pid}"
      continue
    fi
    log "reload latency (${mode}), ${RELOAD_RUNS} runs"
    record_cmd "python3 bench.py reload ${mode} ${RELOAD_RUNS} PID PORT DIR LOG   # kubelet-style swap of ..data; wait for the log line (watch, sighup), then GET /mysecret"
    py reload "${mode}" "${RELOAD_RUNS}" "${pid}" "${port}" "${dir}" "${WORK}/reload-${mode}.log" >"${WORK}/reload-${mode}.txt" ||
      fail "reload (${mode})"
    local v
    while read -r v; do
      sample "reload_${mode}" rs "${v}"
    done <"${WORK}/reload-${mode}.txt"
    stop "${pid}"
  done
}

# fd exhaustion: RLIMIT_NOFILE 64, 100 connections held, then closed: does it serve again?
measure_fd() {
  local side port run pid log
  for side in $(sides); do
    log "fd exhaustion: nofile ${FD_LIMIT}, ${FD_CONNS} connections, ${FD_RUNS} trial(s) (${side})"
    for ((run = 1; run <= FD_RUNS; run++)); do
      port=$(free_port)
      log="fd-${side}-${run}"
      local -a cmd
      if [[ "${side}" == rs ]]; then cmd=("${OUR_CMD[@]}"); else cmd=("${PEER_CMD[@]}"); fi
      cmd=(prlimit "--nofile=${FD_LIMIT}:${FD_LIMIT}" -- "${cmd[@]}" --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}")
      spawn_raw "${log}" "${cmd[@]}"
      pid=${LAST_PID}
      if ! py wait-200 "${port}" 10 "${pid}"; then
        fail "fd exhaustion server (${side})"
        stop "${pid}"
        continue
      fi
      record_cmd "python3 bench.py fdflood PID PORT ${FD_CONNS}   # hold ${FD_CONNS} conns 2 s, close, then a new GET every 20 ms"
      py fdflood "${pid}" "${port}" "${FD_CONNS}" >"${WORK}/${log}.txt" || fail "fd exhaustion (${side})"
      samples_from "${side}" "${WORK}/${log}.txt"
      if running "${pid}"; then
        sample fd_exit "${side}" alive
      else
        reap "${pid}"
        sample fd_exit "${side}" "${REAPED}"
        sample fd_cause "${side}" "$(py cause "${WORK}/${log}.log")"
      fi
      # Our server logs each restart of its accept thread.
      if grep -q 'stopped accepting' "${WORK}/${log}.log"; then
        sample fd_listener_restarts "${side}" "$(grep -c 'accepts connections again' "${WORK}/${log}.log" || true)"
      fi
      stop "${pid}"
    done
  done
}

podman_run() {
  local name=$1
  shift
  CONTAINERS+=("${name}")
  record_cmd "podman ${PODMAN_G[*]} run ${PODMAN_R[*]} -d --name NAME --network host $*"
  podman "${PODMAN_G[@]}" run "${PODMAN_R[@]}" -d --name "${name}" --network host "$@" >/dev/null
}

podman_rm() {
  podman "${PODMAN_G[@]}" rm -f -t 0 "$1" >/dev/null 2>&1 || true
}

container_state() {
  podman "${PODMAN_G[@]}" inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$1"
}

image_of() { if [[ "$1" == rs ]]; then echo "${IMAGE_REF}"; else echo "${PEER_IMAGE}"; fi; }

container_sides() {
  echo rs
  if [[ "${PEER_HAS_IMAGE}" == true ]]; then echo peer; fi
}

# SIGTERM → exit as PID 1: `podman stop -t 10` timed, exit code from podman inspect.
measure_pid1() {
  local side run name port t0 t1 code
  for side in $(container_sides); do
    log "stop as PID 1 in a container, ${STOP_RUNS} run(s) (${side})"
    for ((run = 1; run <= STOP_RUNS; run++)); do
      name="hpbench-stop-${side}-$$-${run}"
      port=$(free_port)
      if ! podman_run "${name}" "$(image_of "${side}")" --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}" ||
        ! py wait-200 "${port}" 15; then
        fail "container start (${side})"
        podman_rm "${name}"
        continue
      fi
      record_cmd "podman ${PODMAN_G[*]} stop -t 10 NAME; podman inspect --format '{{.State.ExitCode}}' NAME"
      t0=$(now_us)
      podman "${PODMAN_G[@]}" stop -t 10 "${name}" >/dev/null 2>&1 || fail "podman stop (${side})"
      t1=$(now_us)
      code=$(podman "${PODMAN_G[@]}" inspect --format '{{.State.ExitCode}}' "${name}" 2>/dev/null || echo '?')
      # milliseconds, from microseconds
      sample pid1_stop "${side}" "$(((t1 - t0) / 1000)).$(printf '%03d' $(((t1 - t0) % 1000)))"
      sample pid1_exit "${side}" "${code}"
      podman_rm "${name}"
    done
  done
}

# Thread exhaustion: a pids limit below what the connections need.
measure_pids() {
  local side name port state
  for side in $(container_sides); do
    name="hpbench-pids-${side}-$$"
    port=$(free_port)
    log "thread exhaustion: --pids-limit ${PIDS_LIMIT}, ${PIDS_CONNS} connections (${side})"
    if ! podman_run "${name}" --pids-limit "${PIDS_LIMIT}" "$(image_of "${side}")" \
      --mysecret "${SECRET}" --listen-addr "127.0.0.1:${port}" || ! py wait-200 "${port}" 15; then
      fail "container start (${side}, pids limit)"
      podman_rm "${name}"
      continue
    fi
    record_cmd "python3 bench.py flood PORT ${PIDS_CONNS}   # hold ${PIDS_CONNS} conns 2 s, count 200s, close"
    py flood "${port}" "${PIDS_CONNS}" >"${WORK}/pids-${side}.txt" || fail "pids flood (${side})"
    samples_from "${side}" "${WORK}/pids-${side}.txt"
    py sleep 1
    state=$(container_state "${name}" 2>/dev/null || echo "unknown ?")
    local status code
    read -r status code <<<"${state}"
    sample pids_status "${side}" "${status}"
    sample pids_exit "${side}" "${code}"
    if [[ "${status}" == running ]]; then
      if py wait-200 "${port}" 5; then sample pids_serves "${side}" yes; else sample pids_serves "${side}" no; fi
    else
      sample pids_serves "${side}" no
    fi
    podman "${PODMAN_G[@]}" logs "${name}" >"${WORK}/pids-${side}.log" 2>&1 || true
    sample pids_cause "${side}" "$(py cause "${WORK}/pids-${side}.log")"
    podman_rm "${name}"
  done
}

# ---------------------------------------------------------------- report

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
    --runs "starts=${STARTS} idle=${IDLE_SECONDS}s wrk=${WRK_RUNS}x${WRK_SECONDS}s reload=${RELOAD_RUNS} stop=${STOP_RUNS} fd=${FD_RUNS}" \
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
  set_profile
  check_tools
  read -r -a PODMAN_G <<<"${PODMAN_GLOBAL_FLAGS:-}"
  read -r -a PODMAN_R <<<"${PODMAN_RUN_FLAGS:-}"
  # A MYSECRET in the caller's environment must not reach the servers.
  unset MYSECRET
  trap cleanup EXIT
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
  : >"${WORK}/samples.tsv"
  : >"${WORK}/commands.txt"
  write_helper

  build_ours
  setup_peer
  # The builds leave dirty pages behind: write them out now rather than during the timings.
  sync || true
  measure_start
  measure_idle_and_keepalive
  measure_wrk
  measure_reload
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

# The measuring helper (python3, standard library only), written to the scratch dir.
write_helper() {
  cat >"${WORK}/bench.py" <<'PY'
"""Measuring helper of scripts/bench.sh: sockets, /proc and the report, in one place."""
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REQ = b"GET /test HTTP/1.1\r\nHost: bench\r\n\r\n"


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def status(pid):
    """VmRSS in KiB and the thread count, from /proc/PID/status."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def cpu_ms(pid):
    """utime+stime in ms (clock-tick resolution) of /proc/PID (or PID/task/TID)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Client:
    """One keep-alive HTTP/1.1 connection that reconnects when the server closes it."""

    def __init__(self, port, timeout=2.0):
        self.port, self.timeout, self.sock, self.buf = port, timeout, None, b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def request(self, method, path):
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
                                  "Content-Length: 0\r\n\r\n".encode())
                return self._read()
            except OSError:
                self.close()
                if attempt == 2:
                    raise
        raise OSError("unreachable")

    def _read(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        code = int(lines[0].split()[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "connection" and "close" in value.lower():
                close = True
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        if close:
            self.close()
        return code, body.decode("utf-8", "replace")


def get_once(port, path="/test", timeout=1.0):
    """Status of one GET on a new connection (Connection: close), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            data = s.recv(64)
            return int(data.split()[1]) if data.startswith(b"HTTP/") else None
    except (OSError, ValueError, IndexError):
        return None


def cmd_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_sleep(seconds):
    time.sleep(float(seconds))


def cmd_wait_200(port, timeout, pid=None):
    end = time.monotonic() + float(timeout)
    while time.monotonic() < end:
        if get_once(int(port)) == 200:
            return 0
        if pid is not None and not alive(int(pid)):
            return 1
        time.sleep(0.01)
    return 1


def cmd_start(runs, port, logfile, *argv):
    """ms from spawn to the first 200 OK, one line per start."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    port = int(port)
    env = {k: v for k, v in os.environ.items() if k != "MYSECRET"}
    for _ in range(int(runs)):
        fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        t0 = time.perf_counter_ns()
        pid = os.posix_spawnp(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)])
        os.close(fd)
        ok = False
        try:
            while time.perf_counter_ns() - t0 < 5e9:
                s = socket.socket()
                try:
                    s.connect(("127.0.0.1", port))
                except OSError:
                    s.close()
                    # Not a pure spin: a spinning parent delays the child it just spawned on
                    # the same CPU by a whole scheduler slice (~3 ms measured), which would be
                    # measured as the server's start time.
                    time.sleep(0.00002)
                    continue
                try:
                    s.sendall(b"GET /test HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    data = s.recv(64)
                except OSError:
                    data = b""
                finally:
                    s.close()
                if data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200"):
                    ok = True
                    break
            t1 = time.perf_counter_ns()
        finally:
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.01)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        if not ok:
            print(f"no 200 OK within 5 s from {' '.join(argv)}", file=sys.stderr)
            return 1
        print(f"{(t1 - t0) / 1e6:.3f}", flush=True)
    return 0


def sched_ns(pid, main_only=False):
    """CPU time in ns from /proc/PID/task/*/schedstat (live threads; ns resolution)."""
    tasks = [str(pid)] if main_only else os.listdir(f"/proc/{pid}/task")
    total = 0
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def switches(pid):
    """Voluntary + involuntary context switches of all live threads (each one a wake-up)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cmd_idle(seconds, *pids):
    """Per server: PID RSS_KIB CPU_MS_PER_10S WAKEUPS_PER_S THREADS after `seconds` idle."""
    pids = [int(p) for p in pids]
    secs = float(seconds)
    before = {p: (sched_ns(p), switches(p)) for p in pids}
    time.sleep(secs)
    for p in pids:
        rss, threads = status(p)
        cpu = (sched_ns(p) - before[p][0]) / 1e6 * 10.0 / secs
        wakeups = (switches(p) - before[p][1]) / secs
        print(p, rss, f"{cpu:.2f}", f"{wakeups:.1f}", threads)
    return 0


def cmd_cpu(pid):
    """utime+stime in ms of the process (dead threads included) and of its main thread."""
    pid = int(pid)
    print(f"{cpu_ms(pid):.0f}", f"{cpu_ms(f'{pid}/task/{pid}'):.0f}")
    return 0


def settle(pid, floor, limit=8.0):
    """Waits until the thread count is back to `floor` or stops falling (tiny_http's idle
    pool threads end 5 s after their connection), at most `limit` seconds."""
    t0 = time.monotonic()
    last, since = status(pid)[1], time.monotonic()
    while time.monotonic() - t0 < limit:
        cur = status(pid)[1]
        if cur <= floor:
            break
        if cur != last:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= 1.5 and time.monotonic() - t0 >= 6.0:
            break
        time.sleep(0.1)
    return time.monotonic() - t0


def open_and_count(port, n, seconds):
    """Opens n connections at once (giving up on opening after 10 s), one keep-alive GET on
    each; counts the answers that arrive within `seconds`. Returns (sockets, answered)."""
    socks = []
    give_up = time.monotonic() + 10
    for _ in range(n):
        if time.monotonic() > give_up:
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), 2)
            s.sendall(REQ)
        except OSError:
            continue
        socks.append(s)
    pending = {s: b"" for s in socks}
    answered = 0
    end = time.monotonic() + seconds
    while pending and time.monotonic() < end:
        ready, _, _ = select.select(list(pending), [], [], max(0.0, end - time.monotonic()))
        for s in ready:
            try:
                chunk = s.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                del pending[s]
                continue
            pending[s] += chunk
            if b"\r\n\r\n" in pending[s]:
                answered += 1
                del pending[s]
    return socks, answered


def cmd_keepalive(pid, port):
    """RSS and threads with 100, then 1000 idle keep-alive connections, then after they close;
    then two bursts of 100 new connections (after the settle, and right after a burst)."""
    pid, port = int(pid), int(port)
    hard = raise_nofile()
    rss, base_threads = status(pid)
    print("ka_base_rss", rss)
    print("ka_base_threads", base_threads)
    socks = []
    for n in (100, 1000):
        if n + 50 > hard:
            print(f"RLIMIT_NOFILE hard limit {hard} is too low for {n} connections", file=sys.stderr)
            break
        more, answered = open_and_count(port, n - len(socks), 5.0)
        socks += more
        time.sleep(1.0)
        rss, threads = status(pid)
        print(f"ka_{n}_rss", rss)
        print(f"ka_{n}_threads", threads)
        print(f"ka_{n}_answered", f"{answered}/{n - (len(socks) - len(more))}", flush=True)
    for s in socks:
        s.close()
    waited = settle(pid, base_threads, 10.0)
    rss, threads = status(pid)
    print("ka_closed_rss", rss)
    print("ka_closed_threads", threads)
    print("ka_closed_after_s", f"{waited:.1f}")
    for phase in ("settled", "warm"):
        # "warm": right after the previous 100 closed, their pool threads wait for work.
        socks, answered = open_and_count(port, 100, 2.0)
        print(f"burst_{phase}", f"{answered}")
        for s in socks:
            s.close()
        time.sleep(0.2)
    return 0


def stamp():
    t = time.time()
    return time.strftime("..%Y_%m_%d_%H_%M_%S", time.gmtime(t)) + f".{time.time_ns() % 10**9:09d}"


def secret_write(d, key, value):
    name = stamp()
    os.mkdir(os.path.join(d, name), 0o755)
    path = os.path.join(d, name, key)
    with open(path, "w") as f:
        f.write(value)
    os.chmod(path, 0o644)
    return name


def cmd_secret_init(d, key, value):
    """A Secret volume as the kubelet lays it out (as scripts/kubelet-secret.sh does)."""
    os.makedirs(d, 0o755, exist_ok=True)
    name = secret_write(d, key, value)
    os.symlink(name, os.path.join(d, "..data"))
    os.symlink(os.path.join("..data", key), os.path.join(d, key))
    return 0


def secret_update(d, key, value):
    """The kubelet's atomic update: new dir, ..data_tmp symlink, rename over ..data, remove
    the old dir. Returns perf_counter_ns() just before the rename."""
    old = os.readlink(os.path.join(d, "..data"))
    name = secret_write(d, key, value)
    tmp = os.path.join(d, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(name, tmp)
    t = time.perf_counter_ns()
    os.rename(tmp, os.path.join(d, "..data"))
    shutil.rmtree(os.path.join(d, old))
    return t


def cmd_reload(mode, runs, pid, port, d, logfile):
    """ms from the rename of ..data to GET /mysecret showing the next generation.

    watch and sighup wait for the server's `secret reloaded: generation N` log line (read
    every 0.5 ms) before the confirming GET: polling over HTTP would wake the server's loop
    every millisecond and hide how long it takes to notice a SIGHUP when idle."""
    pid, port = int(pid), int(port)
    client = Client(port)
    code, body = client.request("GET", "/mysecret")
    gen = int(body.rsplit("generation", 1)[1].strip(" )\n"))
    client.close()
    values = ["5678", "4321"]
    log = open(logfile, "rb")
    for i in range(int(runs)):
        # A random phase against the watch interval (1 s) or the loop's tick (100 ms).
        time.sleep(random.uniform(0.0, 1.0 if mode == "watch" else 0.25))
        log.seek(0, os.SEEK_END)
        seen = b""
        want = f"(generation {gen + 1})"
        line = f"secret reloaded: generation {gen + 1}".encode()
        t0 = secret_update(d, "mysecret", values[i % 2])
        deadline = t0 + 5e9
        if mode == "sighup":
            os.kill(pid, signal.SIGHUP)
        elif mode == "post":
            code, body = client.request("POST", "/-/reload")
            if code != 200:
                print(f"POST /-/reload answered {code}: {body}", file=sys.stderr)
                return 1
        if mode in ("watch", "sighup"):
            while line not in seen:
                seen += log.read()
                if time.perf_counter_ns() > deadline:
                    print(f"no '{line.decode()}' in the log after 5 s", file=sys.stderr)
                    return 1
                time.sleep(0.0005)
        while True:
            code, body = client.request("GET", "/mysecret")
            if want in body:
                t1 = time.perf_counter_ns()
                break
            if time.perf_counter_ns() > deadline:
                print(f"generation {gen + 1} not visible after 5 s: {body!r}", file=sys.stderr)
                return 1
            time.sleep(0.001)
        client.close()
        gen += 1
        print(f"{(t1 - t0) / 1e6:.3f}", flush=True)
    return 0


def hold(port, n, seconds):
    """Opens n connections, each sends one request; counts 200s within `seconds`."""
    socks, refused = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), 1)
            s.sendall(REQ)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            refused += 1
    pending = {s: b"" for s in socks}
    served = 0
    end = time.monotonic() + seconds
    while pending and time.monotonic() < end:
        ready, _, _ = select.select(list(pending), [], [], max(0.0, end - time.monotonic()))
        for s in ready:
            try:
                chunk = s.recv(4096)
            except OSError:
                chunk = b""
            if not chunk:
                del pending[s]
                continue
            pending[s] += chunk
            if b"\r\n" in pending[s]:
                if pending[s].startswith(b"HTTP/1.1 200"):
                    served += 1
                del pending[s]
    time.sleep(max(0.0, end - time.monotonic()))
    return socks, served, refused


def cmd_fdflood(pid, port, n):
    pid, port, n = int(pid), int(port), int(n)
    raise_nofile()
    socks, served, refused = hold(port, n, 2.0)
    print("fd_served", served)
    print("fd_opened", len(socks))
    for s in socks:
        s.close()
    t0 = time.monotonic()
    recovered = None
    while time.monotonic() - t0 < 10:
        if get_once(port, timeout=0.5) == 200:
            recovered = (time.monotonic() - t0) * 1000
            break
        if not alive(pid):
            break
        time.sleep(0.02)
    print("fd_alive", "yes" if alive(pid) else "no")
    if recovered is not None:
        print("fd_recover", f"{recovered:.0f}")
    else:
        print("fd_recover", "never")
    return 0


def cmd_flood(port, n):
    port, n = int(port), int(n)
    raise_nofile()
    socks, served, refused = hold(port, n, 2.0)
    print("pids_served", served)
    print("pids_opened", len(socks))
    for s in socks:
        s.close()
    return 0


def cmd_cause(logfile):
    """The reason a server died, in a few words, from its log ("" when none is found)."""
    with open(logfile, errors="replace") as f:
        text = f.read()
    m = re.search(r"panicked at (\S+?):(\d+):\d+:\s*(.*)", text)
    if m:
        path = m.group(1)
        short = re.search(r"([A-Za-z_]+-\d+\.\d+\.\d+/src/.*)|library/(std/src/.*)", path)
        where = (short.group(1) or short.group(2)) if short else path.rsplit("/", 1)[-1]
        msg = m.group(3).strip()
        err = re.search(r'message: "([^"]+)"', msg)
        msg = msg.split(":")[0] if "Os {" in msg or "Err" in msg else msg
        if err:
            msg = f"{msg}: {err.group(1)}" if not msg.startswith("called") else err.group(1)
        print(f"panic at {where}:{m.group(2)}: {msg[:80]}")
        return 0
    for pattern in ("failed to create new OS thread", "fatal error: [^\n]*", "too many open files"):
        m = re.search(pattern, text)
        if m:
            print(m.group(0)[:80])
            return 0
    print("")
    return 0


def ready(path):
    """Says this watcher has started (its interpreter loaded): the bench starts wrk only
    then, so that starting Python does not compete with the measured run."""
    if path:
        open(path, "w").close()


def cmd_starved(port, seconds, ready_file=None):
    """At 3/4 of a run lasting `seconds`: the established server-side sockets on `port` that
    have never sent a byte (no bytes_acked in `ss -i`), i.e. connections never answered.
    Prints nothing when ss (iproute2) is missing."""
    ready(ready_file)
    if not shutil.which("ss"):
        return 1
    time.sleep(float(seconds) * 0.75)
    out = subprocess.run(["ss", "-Htin", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout
    info = [line for line in out.splitlines() if line.startswith(("\t", " "))]
    print(sum(1 for line in info if "bytes_acked:" not in line))
    return 0


def cmd_switches(pid, seconds, ready_file=None):
    """Context switches per second of all the server's threads over the middle half of a run
    lasting `seconds`."""
    ready(ready_file)
    pid, secs = int(pid), float(seconds)
    time.sleep(secs * 0.25)
    t0, n0 = time.monotonic(), switches(pid)
    time.sleep(secs * 0.5)
    t1, n1 = time.monotonic(), switches(pid)
    print(f"{(n1 - n0) / (t1 - t0):.0f}")
    return 0


def cmd_threads(pid):
    print(status(int(pid))[1])
    return 0


def cmd_wrk_parse():
    rps = p99 = None
    requests = 0
    for line in sys.stdin:
        parts = line.split()
        if len(parts) > 3 and parts[1:3] == ["requests", "in"]:
            requests = int(parts[0])
        elif line.startswith("Requests/sec:"):
            rps = float(parts[1])
        elif len(parts) == 2 and parts[0] == "99%":
            v = parts[1]
            for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
                if v.endswith(unit):
                    p99 = float(v[: -len(unit)]) * scale
                    break
    if rps is None or p99 is None:
        return 1
    print(f"{rps:.0f} {p99:.3f} {requests}")
    return 0


# ----------------------------------------------------------------- report

def fmt_ms(v):
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 100:
        return f"{v:.0f} ms"
    if v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.2f} ms"


def fmt_kb(v):  # bytes → kB (1000 bytes, as build-image.sh) or MB
    return f"{v / 1e6:.2f} MB" if v >= 1e6 else f"{v / 1000:.0f} kB"


def fmt_kib(v):
    return f"{v / 1024:.2f} MiB" if v >= 1024 else f"{v:.0f} KiB"


def fmt_rps(v):
    return f"{v / 1000:.1f}k"


def fmt_int(v):
    return f"{v:.0f}"


def fmt_cpu(v):
    return f"{v:.1f} ms ({v / 100:.3f} %)"


def fmt_num(v):
    return f"{v:.1f}"


def fmt_2(v):
    return f"{v:.2f}"


def fmt_us(v):
    return f"{v:.1f} µs"


def fmt_pct(v):
    return f"{v:.0f} %"


def fmt_s(v):
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


class Samples:
    def __init__(self, path):
        self.data = {}
        with open(path) as f:
            for line in f:
                key, side, value = line.rstrip("\n").split("\t")
                self.data.setdefault((key, side), []).append(value)

    def num(self, key, side):
        out = []
        for v in self.data.get((key, side), []):
            try:
                out.append(float(v))
            except ValueError:
                pass
        return out

    def text(self, key, side):
        vals = self.data.get((key, side), [])
        return vals[-1] if vals else None


def summary(vals, fmt):
    if not vals:
        return "—"
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med)
    lo, hi = fmt(min(vals)), fmt(max(vals))
    if lo.split()[1:] == hi.split()[1:]:
        lo = lo.split()[0]  # same unit: "0.68–4.14 ms"
    return f"{fmt(med)} ({lo}–{hi})"


# (key, label, formatter, target text, check) — check(ours_vals, peer_vals) → True/False/None
def ratio_check(op, limit):
    def check(ours, peer):
        if not ours or not peer:
            return None
        r = statistics.median(ours) / statistics.median(peer)
        return r <= limit if op == "le" else r >= limit
    return check


def rows(watch_ms):
    r = [
        ("binary_size", "binary size (static, stripped)", fmt_kb, "", None),
        ("image_size", "image size (FROM scratch)", fmt_kb, "≤ 700 kB",
         lambda o, p: statistics.median(o) <= 700_000 if o else None),
        ("start_200", "start → first 200 OK", fmt_ms, "median ≤ 1 ms",
         lambda o, p: statistics.median(o) <= 1.0 if o else None),
        ("idle_rss", "idle RSS", fmt_kib, "≤ 1 MiB",
         lambda o, p: statistics.median(o) <= 1024 if o else None),
        ("idle_cpu", "idle CPU per 10 s", fmt_cpu, "", None),
        ("idle_wakeups", "idle wake-ups per second", fmt_num, "", None),
        ("idle_threads", "idle threads", fmt_int, "", None),
    ]
    for mode, what in (("log", "logging on"), ("nolog", "logging off")):
        for c in (10, 100):
            r.append((f"rps_c{c}_{mode}", f"requests/s, {c} conns, {what}", fmt_rps,
                      "≥ 1.0× peer" if c == 100 else "",
                      ratio_check("ge", 1.0) if c == 100 else None))
            r.append((f"p99_c{c}_{mode}", f"p99 latency, {c} conns, {what}", fmt_ms,
                      "≤ 0.3× peer" if c == 100 else "",
                      ratio_check("le", 0.3) if c == 100 else None))
            r.append((f"starved_c{c}_{mode}", f"wrk conns never served, {c} conns, {what}",
                      fmt_int, "0", lambda o, p: max(o) == 0 if o else None))
        r.append((f"cpu_c100_{mode}", f"process CPU per request, 100 conns, {what}", fmt_us,
                  "", None))
        r.append((f"switches_c100_{mode}",
                  f"context switches per request, 100 conns, {what}", fmt_2, "", None))
        r.append((f"main_c100_{mode}", f"main-thread CPU per request, 100 conns, {what}",
                  fmt_us, "", None))
        r.append((f"mainbusy_c100_{mode}", f"main thread busy, 100 conns, {what}", fmt_pct,
                  "", None))
    r += [
        ("ka_base_rss", "RSS before the keep-alive conns", fmt_kib, "", None),
        ("ka_100_rss", "RSS, 100 idle keep-alive conns", fmt_kib, "", None),
        ("ka_100_threads", "threads, 100 idle keep-alive conns", fmt_int, "", None),
        ("ka_100_answered", "100 keep-alive conns opened at once: answered in 5 s", None,
         "all", None),
        ("ka_1000_rss", "RSS, 1000 idle keep-alive conns", fmt_kib, "", None),
        ("ka_1000_threads", "threads, 1000 idle keep-alive conns", fmt_int, "", None),
        ("ka_1000_answered", "900 more opened at once: answered in 5 s", None, "all", None),
        ("ka_closed_rss", "RSS after they close", fmt_kib, "", None),
        ("ka_closed_threads", "threads after they close", fmt_int, "", None),
        ("burst_settled", "burst of 100 new keep-alive conns (settled server): answered in 2 s",
         fmt_int, "100", lambda o, p: min(o) >= 100 if o else None),
        ("burst_warm", "burst of 100 right after another closed: answered in 2 s",
         fmt_int, "100", lambda o, p: min(o) >= 100 if o else None),
        ("reload_watch", f"reload: kubelet swap → visible, --watch-interval {watch_ms / 1000:g}s",
         fmt_ms, f"max ≤ {watch_ms + 50:.0f} ms",
         lambda o, p: max(o) <= watch_ms + 50 if o else None),
        ("reload_sighup", "reload: swap + SIGHUP → visible", fmt_ms, "max ≤ 50 ms",
         lambda o, p: max(o) <= 50 if o else None),
        ("reload_post", "reload: swap + POST /-/reload → visible", fmt_ms, "max ≤ 50 ms",
         lambda o, p: max(o) <= 50 if o else None),
        ("pid1_stop", "SIGTERM → exit as PID 1 (podman stop)", fmt_s, "≤ 0.5 s, exit 0", None),
        ("fd", f"fd exhaustion (nofile {{fd_limit}}, {{fd_conns}} conns)", None,
         "serves again", None),
        ("pids", "thread exhaustion (--pids-limit {pids_limit}, {pids_conns} conns)", None,
         "no zombie listener", None),
    ]
    return r


def pid1_cell(s, side):
    ms = s.num("pid1_stop", side)
    codes = s.data.get(("pid1_exit", side), [])
    if not ms:
        return "—", None
    cell = summary(ms, fmt_s) + ", exit " + ",".join(sorted(set(codes)))
    ok = max(ms) <= 500 and all(c == "0" for c in codes)
    return cell, ok


def fd_cell(s, side):
    recs = s.data.get(("fd_recover", side), [])
    if not recs:
        return "—", None
    n = len(recs)
    times = [float(r) for r in recs if r != "never"]
    exits = [c for c in s.data.get(("fd_exit", side), []) if c != "alive"]
    causes = sorted(set(s.data.get(("fd_cause", side), [])) - {""})
    served = s.num("fd_served", side)
    opened = s.num("fd_opened", side)
    restarts = s.num("fd_listener_restarts", side)
    parts = []
    if times:
        parts.append(f"serves again in {len(times)}/{n} trials, {summary(times, fmt_ms)} after close")
    if len(times) < n:
        deaf = n - len(times) - len(exits)
        if exits:
            parts.append(f"exited {','.join(sorted(set(exits)))} in {len(exits)}/{n}"
                         + (f" ({'; '.join(causes)})" if causes else ""))
        if deaf:
            parts.append(f"ALIVE BUT DOES NOT SERVE in {deaf}/{n} (zombie listener)")
    if served and opened:
        parts.append(f"{statistics.median(served):.0f}/{statistics.median(opened):.0f} served "
                     "during the flood (median)")
    if restarts:
        parts.append(f"accept thread restarted {statistics.median(restarts):.0f}× (median)")
    # The target: serve again once the connections close (an exit is restartable, but MISSED).
    return "; ".join(parts), len(times) == n


def pids_cell(s, side):
    st = s.text("pids_status", side)
    if st is None:
        return "—", None
    code = s.text("pids_exit", side)
    serves = s.text("pids_serves", side)
    cause = s.text("pids_cause", side)
    served = s.text("pids_served", side)
    opened = s.text("pids_opened", side)
    if st == "running":
        cell = "alive, serves again" if serves == "yes" else "ALIVE BUT DEAF (zombie listener)"
        ok = serves == "yes"
    else:
        cell = f"{st}, exit {code}" + (f" ({cause})" if cause else "")
        ok = code not in (None, "0", "?")
    cell += f"; {served}/{opened} served"
    return cell, ok


def ratio_text(ours, peer):
    if not ours or not peer:
        return "—"
    p = statistics.median(peer)
    if p == 0:
        return "—"
    return f"{statistics.median(ours) / p:.2f}×"


def cmd_table(path, *opts):
    o = dict(zip(opts[::2], opts[1::2]))
    s = Samples(path)
    has_peer = o["--peer"] != "none"
    out = []
    w = out.append
    w(f"Measured {o['--date']} at revision {o['--revision']} on {o['--machine']}.")
    w(f"Binary: `{o['--binary']}`. Runs: {o['--runs']}"
      + (" (--quick: indicative only)." if o["--quick"] == "true" else "."))
    if has_peer:
        w(f"Peer: {o['--peer']}.")
        if "stand-in" in o["--peer"]:
            w("The peer is a stand-in written for this project (bench/peer-go), not the original "
              "hello-path-go binary: its figures show what a plain Go net/http server costs.")
    else:
        w("Peer: none (run with --compare go or --compare CMD for ratios).")
    w("")
    w("| measure | hello-path-rs (median, min–max) | peer | ratio | target | verdict |")
    w("|---|---|---|---|---|---|")
    verdicts = {"ok": 0, "MISSED": 0}
    fill = {"fd_limit": FD_LIMIT, "fd_conns": FD_CONNS,
            "pids_limit": PIDS_LIMIT, "pids_conns": PIDS_CONNS}
    for key, label, fmt, target, check in rows(1000.0):
        label = label.format(**fill)
        if fmt is None and key not in ("fd", "pids"):  # text "answered/opened"
            ours, peer = s.text(key, "rs"), s.text(key, "peer")
            if ours is None and peer is None:
                continue
            ours, peer = ours or "—", peer or "—"
            ratio = "—"
            ok = None
            if "/" in ours:
                a, b = ours.split("/")
                ok = a == b
        elif key in ("pid1_stop", "fd", "pids"):  # cells built from several samples
            cellf = {"pid1_stop": pid1_cell, "fd": fd_cell, "pids": pids_cell}[key]
            ours, ok = cellf(s, "rs")
            peer, _ = cellf(s, "peer")
            if ours == "—" and peer == "—":
                continue
            ratio = "—"
            if key == "pid1_stop":
                ratio = ratio_text(s.num("pid1_stop", "rs"), s.num("pid1_stop", "peer"))
            elif key == "fd":
                a = [float(v) for v in s.data.get(("fd_recover", "rs"), []) if v != "never"]
                b = [float(v) for v in s.data.get(("fd_recover", "peer"), []) if v != "never"]
                ratio = ratio_text(a, b)
        else:
            ov, pv = s.num(key, "rs"), s.num(key, "peer")
            if not ov and not pv:
                continue
            ours, peer = summary(ov, fmt), summary(pv, fmt)
            ratio = ratio_text(ov, pv)
            ok = check(ov, pv) if check else None
        if not target:
            verdict = ""
        elif ok is None:
            verdict = "n/a (no peer)" if "peer" in target else "n/a"
        else:
            verdict = "ok" if ok else "MISSED"
            verdicts[verdict] += 1
        if not has_peer:
            peer = ratio = "—"
        w(f"| {label} | {ours} | {peer} | {ratio} | {target} | {verdict} |")
    w("")
    w(f"Targets: {verdicts['ok']} ok, {verdicts['MISSED']} MISSED. "
      "Ratio = ours / peer (medians). Sizes in kB = 1000 bytes; RSS: VmRSS of /proc/PID/status; "
      "idle CPU and wake-ups: /proc/PID/task/*/schedstat and context switches over the idle "
      "window; CPU per request: utime+stime of /proc/PID/stat (and of the main thread) over a "
      "wrk run divided by its requests; context switches per request: voluntary + "
      "involuntary of all threads (/proc/PID/task/*/status) over the middle half of a wrk run, "
      "per second, divided by its requests/s; \"never served\": server sockets that had sent no "
      "byte 3/4 into the wrk run (ss -ti).")
    for name, title in (("--wrk-errors", "wrk reported errors"), ("--failures", "Failed measurements")):
        p = o.get(name)
        if p and os.path.exists(p) and os.path.getsize(p):
            w("")
            w(f"{title}:")
            with open(p) as f:
                for line in f:
                    w(f"- {line.strip()}")
    w("")
    w("Raw samples (key side: values):")
    w("")
    w("```")
    for (key, side), vals in s.data.items():
        w(f"{key} {side}: {' '.join(vals)}")
    w("```")
    w("")
    w("Commands (PORT, PID, NAME, DIR: chosen at run time; bench.py: the helper inside "
      "scripts/bench.sh):")
    w("")
    w("```")
    with open(o["--commands"]) as f:
        for line in f:
            w(line.rstrip("\n"))
    w("```")
    print("\n".join(out))
    return 0


BEGIN = "<!-- bench.sh:begin"
BEGIN_LINE = BEGIN + " (generated by scripts/bench.sh --write-results; edit outside the markers) -->"
END = "<!-- bench.sh:end -->"


def cmd_splice(results, generated):
    """Replaces the generated block of RESULTS.md, keeping what is written around it."""
    with open(generated) as f:
        block = f"{BEGIN_LINE}\n{f.read().rstrip()}\n{END}"
    text = ""
    if os.path.exists(results):
        with open(results) as f:
            text = f.read()
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        i = text.index(BEGIN)
        j = text.index(END, i) + len(END)
        text = text[:i] + block + text[j:]
    else:
        text = "# Benchmark results\n\n" + block + "\n" + ("\n" + text if text else "")
    with open(results, "w") as f:
        f.write(text)
    return 0


FD_LIMIT, FD_CONNS, PIDS_LIMIT, PIDS_CONNS = (int(os.environ.get(k, d)) for k, d in (
    ("BENCH_FD_LIMIT", "64"), ("BENCH_FD_CONNS", "100"),
    ("BENCH_PIDS_LIMIT", "32"), ("BENCH_PIDS_CONNS", "64")))


def main(argv):
    # No helper may hang the bench: each one is bounded.
    signal.alarm(240)
    cmd, args = argv[0].replace("-", "_"), argv[1:]
    return globals()[f"cmd_{cmd}"](*args) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
PY
}

main "$@"
