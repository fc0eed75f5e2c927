#!/usr/bin/env bash
# build.sh — what scripts/bench.sh needs and what it measures (sourced): the tools (installed
# with --install), our static binary and image, built here (or given with --binary), and the
# peer of --compare (a command, or bench/peer-go built with go into a FROM-scratch image of
# its own). Needs run.sh and lib/engine.sh.
# shellcheck shell=bash
# Variables set here are read by bench.sh and the other files of scripts/lib/bench/:
# shellcheck disable=SC2034

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
    record_cmd "scripts/build-image.sh --only service --image ${IMAGE_REF}"
    out=$("${ROOT}/scripts/build-image.sh" --only service --image "${IMAGE_REF}" 2>"${WORK}/build.log") || {
      tail -n 20 "${WORK}/build.log" >&2
      die "scripts/build-image.sh failed"
    }
    # One line per image: REF PLATFORM SIZE bytes (N kB); the service's is IMAGE_REF's (the
    # nudger's image is measured by --nudger).
    size=$(awk -v ref="${IMAGE_REF}" '$1 == ref { s = $3 } END { print s }' <<<"${out}")
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
    record_cmd "podman build --layers=false -f bench/peer-go/Containerfile -t ${PEER_IMAGE} <dir with peer-go>"
    engine build --layers=false -f "${ROOT}/bench/peer-go/Containerfile" -t "${PEER_IMAGE}" \
      "${WORK}/peer" >>"${WORK}/peer-build.log" 2>&1 || {
      tail -n 20 "${WORK}/peer-build.log" >&2
      die "podman build of the peer image failed"
    }
    PEER_IMAGE_BUILT=true
    sample image_size peer "$(engine image inspect --format '{{.Size}}' "${PEER_IMAGE}")"
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

