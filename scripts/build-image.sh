#!/usr/bin/env bash
# build-image.sh — build the static binaries and the FROM-scratch images: the service
# (hello-path-rs, Containerfile.scratch) and the nudger (hello-path-nudger, Containerfile.nudger).
#
# Builds the musl binaries with cargo for each requested platform, checks that each is
# static (no ELF program interpreter) and of the right machine, then builds its image with
# podman, buildah or docker. Nothing is pulled and nothing is emulated: an image is one COPY
# onto an empty base. With more than one platform, each architecture gets its own image
# (REF-ARCH, e.g. localhost/hello-path-rs:0.1.0-arm64) and REF becomes a manifest list
# holding them (podman/buildah; docker keeps no local list, see below).
#
# Usage:
#   scripts/build-image.sh [--platforms LIST] [--engine NAME] [--image REF]
#                          [--nudger-image REF] [--only service|nudger] [--no-cargo]
#
#   --platforms LIST     comma-separated, from linux/amd64 and linux/arm64
#                        (default: the host's architecture only)
#   --engine NAME        podman, buildah or docker (default: $CONTAINER_ENGINE, else the
#                        first of podman, buildah, docker found on PATH)
#   --image REF          the service's image reference (default: $IMAGE)
#   --nudger-image REF   the nudger's image reference (default: $NUDGER_IMAGE)
#   --only WHICH         build one of the two: service or nudger (default: both)
#   --no-cargo           do not run cargo; use the binaries already in the target directory
#   -h, --help           show this help
#
# Prints, on stdout, one line per image:  REF PLATFORM SIZE bytes (N kB)   (kB = 1000 bytes)
#
# The nudger's C (ring, under rustls) needs a C compiler for the musl target: musl-gcc
# (Debian's musl-tools) for amd64, clang and llvm-ar for arm64 (.cargo/config.toml).
#
# Environment:
#   IMAGE               the service's image (default: localhost/hello-path-rs:0.1.0)
#   NUDGER_IMAGE        the nudger's image (default: localhost/hello-path-nudger:0.1.0)
#   CONTAINER_ENGINE    podman | buildah | docker (default: auto-detected)
#   PODMAN_GLOBAL_FLAGS extra global podman flags, e.g. "--runtime runc" (default: none;
#                       a build runs no container, so nothing is found out here)
#   CARGO               cargo command (default: cargo)
#   CARGO_TARGET_DIR    cargo's target directory (default: <repo>/target)
#   SOURCE_DATE_EPOCH   image creation time, for reproducible images (default: the time of
#                       the last commit; same binary and commit give the same image ID)
#
# With docker and several platforms, the per-architecture images are built and loaded, but
# docker's classic image store cannot hold a manifest list: push them to a registry and
# join them there (scripts/load-image.sh --registry REG does both).
#
# Exit status: 0 built, 1 failure, 2 bad arguments.
set -o errexit -o nounset -o pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly DEFAULT_IMAGE=localhost/hello-path-rs:0.1.0
readonly DEFAULT_NUDGER_IMAGE=localhost/hello-path-nudger:0.1.0

ENGINE=""
IMAGE_REF=""
NUDGER_REF=""
ONLY=""
PLATFORMS=""
RUN_CARGO=true
EPOCH=""
WORKDIR=""
BINARIES=()
# The engine: pick_engine, engine (scripts/lib/engine.sh).
# shellcheck source=scripts/lib/engine.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/engine.sh"

usage() {
  sed -n '2,/^[^#]/{/^[^#]/d;/^# shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }
usage_error() {
  printf 'build-image: error: %s\n' "$*" >&2
  printf "Try 'scripts/build-image.sh --help'.\n" >&2
  exit 2
}

cleanup() {
  if [[ -n "${WORKDIR}" && -d "${WORKDIR}" ]]; then
    rm -rf -- "${WORKDIR}"
  fi
}

parse_args() {
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --platforms | --engine | --image | --nudger-image | --only)
        if (($# < 2)) || [[ -z "$2" ]]; then usage_error "$1 needs a value"; fi
        case "$1" in
          --platforms) PLATFORMS=$2 ;;
          --engine) ENGINE=$2 ;;
          --image) IMAGE_REF=$2 ;;
          --nudger-image) NUDGER_REF=$2 ;;
          --only) ONLY=$2 ;;
        esac
        shift 2
        ;;
      --platforms=* | --engine=* | --image=* | --nudger-image=* | --only=*)
        local value=${1#*=}
        [[ -n "${value}" ]] || usage_error "${1%%=*} needs a value"
        case "$1" in
          --platforms=*) PLATFORMS=${value} ;;
          --engine=*) ENGINE=${value} ;;
          --image=*) IMAGE_REF=${value} ;;
          --nudger-image=*) NUDGER_REF=${value} ;;
          --only=*) ONLY=${value} ;;
        esac
        shift
        ;;
      --no-cargo) RUN_CARGO=false; shift ;;
      *) usage_error "unknown argument: $1" ;;
    esac
  done
  IMAGE_REF=${IMAGE_REF:-${IMAGE:-${DEFAULT_IMAGE}}}
  [[ "${IMAGE_REF}" != *@* ]] || usage_error "IMAGE must be NAME[:TAG], not a digest: ${IMAGE_REF}"
  NUDGER_REF=${NUDGER_REF:-${NUDGER_IMAGE:-${DEFAULT_NUDGER_IMAGE}}}
  [[ "${NUDGER_REF}" != *@* ]] || usage_error "NUDGER_IMAGE must be NAME[:TAG], not a digest: ${NUDGER_REF}"
  case "${ONLY}" in
    "") BINARIES=(hello-path-rs hello-path-nudger) ;;
    service) BINARIES=(hello-path-rs) ;;
    nudger) BINARIES=(hello-path-nudger) ;;
    *) usage_error "--only takes service or nudger, not '${ONLY}'" ;;
  esac
  ENGINE=${ENGINE:-${CONTAINER_ENGINE:-}}
  case "${ENGINE}" in
    "" | podman | buildah | docker) ;;
    *) usage_error "unknown engine '${ENGINE}' (podman, buildah or docker)" ;;
  esac
  if [[ -z "${PLATFORMS}" ]]; then
    PLATFORMS=$(host_platform) || die "unsupported host architecture $(uname -m); pass --platforms"
  fi
  local p
  for p in ${PLATFORMS//,/ }; do
    rust_target "${p}" >/dev/null || usage_error "unsupported platform '${p}' (linux/amd64, linux/arm64)"
  done
}

# The host's platform in OCI terms.
host_platform() {
  case "$(uname -m)" in
    x86_64 | amd64) echo linux/amd64 ;;
    aarch64 | arm64) echo linux/arm64 ;;
    *) return 1 ;;
  esac
}

# PLATFORM -> Rust target triple.
rust_target() {
  case "$1" in
    linux/amd64) echo x86_64-unknown-linux-musl ;;
    linux/arm64 | linux/arm64/v8) echo aarch64-unknown-linux-musl ;;
    *) return 1 ;;
  esac
}

# PLATFORM -> ELF e_machine (EM_X86_64 = 62, EM_AARCH64 = 183).
elf_machine() {
  case "$1" in
    linux/amd64) echo 62 ;;
    linux/arm64 | linux/arm64/v8) echo 183 ;;
  esac
}

# PLATFORM -> architecture as written in image configs and manifest lists.
platform_arch() {
  local rest=${1#*/}
  echo "${rest%%/*}"
}



# BINARY -> the version of its package (Cargo.toml's [package] section, nudger/ for the
# nudger).
package_version() {
  local manifest="${ROOT}/Cargo.toml" v
  [[ "${1:-hello-path-rs}" != hello-path-nudger ]] || manifest="${ROOT}/nudger/Cargo.toml"
  v=$(sed -n '/^\[package\]/,/^\[/{s/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p;}' \
    "${manifest}" | head -n 1)
  [[ -n "${v}" ]] || die "cannot read the package version from ${manifest}"
  echo "${v}"
}

# BINARY -> its Containerfile.
containerfile() {
  case "$1" in
    hello-path-nudger) echo "${ROOT}/Containerfile.nudger" ;;
    *) echo "${ROOT}/Containerfile.scratch" ;;
  esac
}

# BINARY -> the image reference it is built under.
image_of() {
  case "$1" in
    hello-path-nudger) echo "${NUDGER_REF}" ;;
    *) echo "${IMAGE_REF}" ;;
  esac
}

revision() {
  git -C "${ROOT}" rev-parse --short HEAD 2>/dev/null || echo unknown
}

# The repository's remote as an https URL, or nothing.
source_url() {
  local url
  url=$(git -C "${ROOT}" config --get remote.origin.url 2>/dev/null) || return 0
  case "${url}" in
    git@*:*) url="https://${url#git@}"; url=${url/://} ;;
  esac
  echo "${url%.git}"
}

# Seconds since the epoch to stamp the image with, or nothing.
source_date_epoch() {
  if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
    [[ "${SOURCE_DATE_EPOCH}" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since the epoch"
    echo "${SOURCE_DATE_EPOCH}"
  else
    git -C "${ROOT}" log -1 --format=%ct 2>/dev/null || true
  fi
}

target_dir() {
  echo "${CARGO_TARGET_DIR:-${ROOT}/target}"
}

ensure_rust_target() {
  local triple=$1 libdir
  libdir=$(rustc --print target-libdir --target "${triple}" 2>/dev/null) || libdir=""
  if [[ -n "${libdir}" && -d "${libdir}" ]] && compgen -G "${libdir}/libstd-*" >/dev/null; then
    return 0
  fi
  if command -v rustup >/dev/null 2>&1; then
    log "adding the Rust target ${triple} (rustup target add)"
    rustup target add "${triple}" >&2 || die "rustup target add ${triple} failed"
  else
    die "the Rust standard library for ${triple} is missing and rustup is not installed; install it (rustup target add ${triple}, or your distribution's rust-std package for ${triple})"
  fi
}

cargo_build() {
  local triple=$1 bin packages=()
  ensure_rust_target "${triple}"
  for bin in "${BINARIES[@]}"; do packages+=(-p "${bin}"); done
  log "cargo build --release --target ${triple} ${packages[*]}"
  # shellcheck disable=SC2086 # CARGO may hold a command with arguments, e.g. "cargo +stable".
  ${CARGO:-cargo} build --release --target "${triple}" --manifest-path "${ROOT}/Cargo.toml" \
    "${packages[@]}" >&2 || die "cargo build --release --target ${triple} ${packages[*]} failed"
}

# FILE OFFSET SIZE -> the unsigned little-endian integer at OFFSET.
elf_uint() {
  od -An -t "u$3" -j "$2" -N "$3" -- "$1" | tr -d ' \n'
}

# Checks, without binutils, that FILE is a 64-bit little-endian ELF executable for machine
# WANT and that no program header asks for an interpreter (PT_INTERP = 3): that is, it is
# static (a static-pie has PT_DYNAMIC but still no interpreter).
check_static() {
  local file=$1 want=$2 magic machine phoff phentsize phnum i type
  [[ -f "${file}" ]] || die "binary not found: ${file}"
  magic=$(od -An -t x1 -N 6 -- "${file}" | tr -d ' \n')
  [[ "${magic}" == 7f454c460201 ]] || die "${file} is not a 64-bit little-endian ELF file"
  machine=$(elf_uint "${file}" 18 2)
  [[ "${machine}" == "${want}" ]] || die "${file} is for ELF machine ${machine}, expected ${want}"
  phoff=$(elf_uint "${file}" 32 8)
  phentsize=$(elf_uint "${file}" 54 2)
  phnum=$(elf_uint "${file}" 56 2)
  ((phnum > 0)) || die "${file} has no program headers"
  for ((i = 0; i < phnum; i++)); do
    type=$(elf_uint "${file}" $((phoff + i * phentsize)) 4)
    if ((type == 3)); then
      die "${file} is dynamically linked (it has a program interpreter); build it for a musl target"
    fi
  done
  log "static: ${file}"
}

# REF -> its size in bytes (uncompressed layers), as the engine reports it.
image_size() {
  local ref=$1
  case "${ENGINE}" in
    podman | docker) engine image inspect --format '{{.Size}}' "${ref}" ;;
    buildah)
      # buildah reports sizes only for humans; add up the manifest's config and layers.
      local manifest n total=0
      manifest=$(buildah inspect --type image --format '{{.Manifest}}' "${ref}") || return 1
      while read -r n; do
        total=$((total + n))
      done < <(grep -o '"size":[0-9]*' <<<"${manifest}" | cut -d: -f2)
      echo "${total}"
      ;;
  esac
}

report() {
  local ref=$1 platform=$2 size
  size=$(image_size "${ref}") || die "cannot read the size of ${ref}"
  printf '%s %s %s bytes (%s kB)\n' "${ref}" "${platform}" "${size}" "$(((size + 500) / 1000))"
}

# REF -> REF with the tag suffixed by -ARCH (a missing tag counts as latest).
arch_ref() {
  local ref=$1 arch=$2 last=${1##*/}
  if [[ "${last}" == *:* ]]; then
    echo "${ref}-${arch}"
  else
    echo "${ref}:latest-${arch}"
  fi
}

# Removes REF from local storage if it names a manifest list (podman/buildah).
drop_list() {
  local ref=$1
  case "${ENGINE}" in
    podman)
      if engine manifest exists "${ref}" 2>/dev/null; then engine manifest rm "${ref}" >/dev/null; fi
      ;;
    buildah)
      if buildah manifest inspect "${ref}" >/dev/null 2>&1; then buildah manifest rm "${ref}" >/dev/null; fi
      ;;
  esac
}

# Removes the name REF (list or image) so that a manifest list can take it.
drop_name() {
  local ref=$1
  drop_list "${ref}"
  case "${ENGINE}" in
    podman)
      if engine image exists "${ref}" 2>/dev/null; then engine untag "${ref}" "${ref}"; fi
      ;;
    buildah)
      if buildah inspect --type image "${ref}" >/dev/null 2>&1; then buildah rmi "${ref}" >/dev/null; fi
      ;;
    docker) ;;
  esac
}

# Builds one image of BINARY for PLATFORM, tagged REF, from the staged binary.
build_one() {
  local platform=$1 ref=$2 name=$3 triple ctx bin
  triple=$(rust_target "${platform}")
  bin="$(target_dir)/${triple}/release/${name}"
  check_static "${bin}" "$(elf_machine "${platform}")"
  # A context holding only the binary: nothing else is sent to a daemon or scanned, and the
  # mode is 0755 whatever the umask, so that the unprivileged USER can execute it.
  ctx="${WORKDIR}/${name}-$(platform_arch "${platform}")"
  mkdir -p -- "${ctx}"
  install -m 0755 -- "${bin}" "${ctx}/${name}"
  local args=(
    --platform "${platform}"
    -f "$(containerfile "${name}")"
    --build-arg "BINARY=${name}"
    --build-arg "VERSION=$(package_version "${name}")"
    --build-arg "REVISION=${REVISION}"
    --build-arg "SOURCE=${SOURCE}"
    -t "${ref}"
  )
  if [[ -n "${EPOCH}" ]]; then
    case "${ENGINE}" in
      podman | buildah) args+=(--timestamp "${EPOCH}") ;;
      docker) args+=(--build-arg "SOURCE_DATE_EPOCH=${EPOCH}") ;;
    esac
  fi
  log "building ${ref} for ${platform}"
  case "${ENGINE}" in
    podman) engine build --layers=false "${args[@]}" "${ctx}" >&2 ;;
    buildah) buildah bud --layers=false "${args[@]}" "${ctx}" >&2 ;;
    docker) docker build "${args[@]}" "${ctx}" >&2 ;;
  esac || die "${ENGINE} build of ${ref} for ${platform} failed"
}

# Builds BINARY for every platform and joins the images under its reference.
build_list() {
  local name=$1 image platform arch ref refs=()
  image=$(image_of "${name}")
  for platform in ${PLATFORMS//,/ }; do
    ref=$(arch_ref "${image}" "$(platform_arch "${platform}")")
    drop_list "${ref}"
    build_one "${platform}" "${ref}" "${name}"
    refs+=("${ref}")
  done
  case "${ENGINE}" in
    podman | buildah)
      drop_name "${image}"
      local tool=(engine)
      [[ "${ENGINE}" == buildah ]] && tool=(buildah)
      "${tool[@]}" manifest create "${image}" >/dev/null
      for ref in "${refs[@]}"; do
        "${tool[@]}" manifest add "${image}" "containers-storage:${ref}" >/dev/null \
          || die "cannot add ${ref} to the manifest list ${image}"
      done
      log "manifest list ${image}: ${refs[*]}"
      ;;
    docker)
      log "docker keeps no manifest list locally: push ${refs[*]} and join them with"
      log "  docker buildx imagetools create -t REGISTRY/${name}:TAG <pushed refs>"
      log "(scripts/load-image.sh --registry REGISTRY does both)"
      ;;
  esac
  local i=0
  for platform in ${PLATFORMS//,/ }; do
    report "${refs[i]}" "${platform}"
    i=$((i + 1))
  done
}

main() {
  parse_args "$@"
  pick_engine
  log "engine: ${ENGINE}${ENGINE_GLOBAL[*]:+ ${ENGINE_GLOBAL[*]}}"
  trap cleanup EXIT
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/build-image.XXXXXX")
  REVISION=$(revision)
  SOURCE=$(source_url)
  EPOCH=$(source_date_epoch)
  log "images: ${BINARIES[*]}; version $(package_version), revision ${REVISION}, platforms ${PLATFORMS}"

  local platform
  if [[ "${RUN_CARGO}" == true ]]; then
    for platform in ${PLATFORMS//,/ }; do
      cargo_build "$(rust_target "${platform}")"
    done
  fi

  local name image
  for name in "${BINARIES[@]}"; do
    if [[ "${PLATFORMS}" == *,* ]]; then
      build_list "${name}"
    else
      image=$(image_of "${name}")
      drop_list "${image}"
      build_one "${PLATFORMS}" "${image}" "${name}"
      report "${image}" "${PLATFORMS}"
    fi
  done
}

main "$@"
