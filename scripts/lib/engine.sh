#!/usr/bin/env bash
# engine.sh — the container engine (sourced by build-image.sh, load-image.sh, bench.sh,
# tests/image.sh and tests/multiarch.sh): which one, its global flags, and the flags `run`
# needs on this machine, found out rather than configured.
#
#   pick_engine         sets ENGINE (kept when already set, e.g. from --engine or
#                       CONTAINER_ENGINE; else the first of podman, buildah, docker on PATH)
#                       and ENGINE_GLOBAL (engine_global_flags). Needs `die`.
#   engine_global_flags ENGINE_GLOBAL: the words of PODMAN_GLOBAL_FLAGS for podman, e.g.
#                       "--runtime runc" (empty otherwise)
#   engine ARG...       runs the engine with its global flags; bounded by timeout(1) when
#                       ENGINE_TIMEOUT (seconds) is set
#   engine_detect_run IMAGE [ARG...]
#                       finds out what `run` needs here, by running IMAGE ARG... once (it must
#                       exit 0 at once, e.g. hello-path-rs --version): sets ENGINE_RUN, the
#                       flags to put after `run`, and may add to ENGINE_GLOBAL; ENGINE_NOTE is
#                       one line to print when it fell back on something. Returns 1 when no
#                       container starts, with the reason in ENGINE_NOTE.
#
# The fallback. A rootful podman (or docker) asks the OCI runtime for RLIMIT_NOFILE and
# RLIMIT_NPROC of 1048576 in every container. Raising a hard limit needs CAP_SYS_RESOURCE,
# which root inside a container or a CI sandbox often lacks: wherever this process's own
# hard limits are lower (`ulimit -Hn`, `ulimit -Hu`, /proc/self/limits), every container
# fails with "error setting rlimits ... operation not permitted". A rootless podman already
# keeps to the caller's limits. So when a container cannot start and the engine says
# "rlimit", it is tried once more with the limits this process has: --ulimit
# nofile=SOFT:HARD and nproc=SOFT:HARD, nproc at most /proc/sys/kernel/pid_max (podman
# lowers its own RLIMIT_NPROC to pid_max at start-up, and a container cannot get more than
# podman has). When the error is the OCI runtime's own (crun cannot start containers on
# some hybrid cgroup setups, where runc can), podman is tried with --runtime runc as well,
# if runc is installed and not the runtime already. Any other failure (no such image, a
# bad option) is not retried.
#
# Environment (overrides of what is found out: set, even empty, they are used as given):
#   PODMAN_GLOBAL_FLAGS   global podman flags, e.g. "--runtime runc" [found out]
#   PODMAN_RUN_FLAGS      extra `run` flags, e.g. "--ulimit nofile=1024:1024" [found out]
# shellcheck shell=bash
# Variables set here are read by the scripts that source this file:
# shellcheck disable=SC2034

ENGINE=${ENGINE:-}
ENGINE_GLOBAL=()
ENGINE_RUN=()
ENGINE_NOTE=""

pick_engine() {
  if [[ -n "${ENGINE}" ]]; then
    command -v "${ENGINE}" >/dev/null 2>&1 || die "container engine '${ENGINE}' not found on PATH"
  else
    local e
    for e in podman buildah docker; do
      if command -v "${e}" >/dev/null 2>&1; then ENGINE=${e}; break; fi
    done
    [[ -n "${ENGINE}" ]] || die "no container engine found: install podman (or buildah, or docker)"
  fi
  engine_global_flags
}

engine_global_flags() {
  ENGINE_GLOBAL=()
  if [[ "$(basename -- "${ENGINE}")" == podman && -n "${PODMAN_GLOBAL_FLAGS:-}" ]]; then
    read -r -a ENGINE_GLOBAL <<<"${PODMAN_GLOBAL_FLAGS}"
  fi
}

engine() {
  if [[ -n "${ENGINE_TIMEOUT:-}" ]]; then
    timeout -k 10 "${ENGINE_TIMEOUT}" "${ENGINE}" "${ENGINE_GLOBAL[@]}" "$@"
  else
    "${ENGINE}" "${ENGINE_GLOBAL[@]}" "$@"
  fi
}

# _engine_limit SOFT|HARD OPTION — this process's limit (ulimit -S/-H OPTION), "unlimited"
# as 1048576 (what the engine asks for), never above /proc/sys/kernel/pid_max for -u.
_engine_limit() {
  local v max
  v=$(ulimit "-$1$2" 2>/dev/null) || v=unlimited
  [[ "${v}" =~ ^[0-9]+$ ]] || v=1048576
  if [[ "$2" == u ]] && max=$(cat /proc/sys/kernel/pid_max 2>/dev/null) && ((v > max)); then
    v=${max}
  fi
  echo "${v}"
}

# _engine_runtime — the OCI runtime podman uses now (podman info), or "" when unknown.
_engine_runtime() {
  engine info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null || true
}

engine_detect_run() {
  local image=$1 err why name
  shift
  ENGINE_RUN=() ENGINE_NOTE=""
  if [[ -n "${PODMAN_RUN_FLAGS+set}" ]]; then
    read -r -a ENGINE_RUN <<<"${PODMAN_RUN_FLAGS}"
    return 0
  fi
  name=$(basename -- "${ENGINE}")
  case "${name}" in
    podman | docker) ;;
    *) return 0 ;;
  esac
  if err=$(engine run --rm "${image}" "$@" 2>&1 >/dev/null); then
    return 0
  fi
  why=$(grep -v '^[[:space:]]*$' <<<"${err}" | tail -n 1 | sed 's/^Error: //')
  local -a limits=(--ulimit "nofile=$(_engine_limit S n):$(_engine_limit H n)"
    --ulimit "nproc=$(_engine_limit S u):$(_engine_limit H u)") runtime=()
  if grep -qi 'rlimit' <<<"${err}"; then
    why=$(sed -E 's/.*(error setting rlimit type [0-9]+: [^:]*).*/\1/' <<<"${why}")
  elif grep -qiE 'OCI runtime|runtime .*(not found|failed|error)|crun|runc|cgroup' <<<"${err}"; then
    if [[ "${name}" == podman && -z "${PODMAN_GLOBAL_FLAGS+set}" ]] &&
      command -v runc >/dev/null 2>&1 && [[ "$(_engine_runtime)" != runc ]]; then
      runtime=(--runtime runc)
    fi
  else
    ENGINE_NOTE="${name} cannot start ${image}: ${why:0:200}"
    return 1
  fi
  local tried="${runtime[*]:+${runtime[*]} }${limits[*]}"
  local -a before=("${ENGINE_GLOBAL[@]}")
  ENGINE_GLOBAL+=("${runtime[@]}")
  if engine run --rm "${limits[@]}" "${image}" "$@" >/dev/null 2>&1; then
    ENGINE_RUN=("${limits[@]}")
    ENGINE_NOTE="${name} could not start a container here (${why:0:160}); retried with ${tried} (this process's own limits, nproc at most pid_max${runtime[*]:+; runc for the runtime}): that works, used from now on (PODMAN_RUN_FLAGS, PODMAN_GLOBAL_FLAGS override)"
    return 0
  fi
  ENGINE_GLOBAL=("${before[@]}")
  ENGINE_NOTE="${name} cannot start a container here (${why:0:160}), not even with ${tried}"
  return 1
}
