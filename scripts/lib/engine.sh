#!/usr/bin/env bash
# engine.sh — the container engine shared by build-image.sh and load-image.sh (sourced).
#
# pick_engine   sets ENGINE (kept when already set, e.g. from --engine or CONTAINER_ENGINE;
#               else the first of podman, buildah, docker on PATH) and ENGINE_GLOBAL (the
#               words of PODMAN_GLOBAL_FLAGS for podman, e.g. "--runtime runc"). Needs `die`.
# engine ARG... runs the engine with its global flags.

ENGINE=${ENGINE:-}
ENGINE_GLOBAL=()

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
  if [[ "${ENGINE}" == podman && -n "${PODMAN_GLOBAL_FLAGS:-}" ]]; then
    read -r -a ENGINE_GLOBAL <<<"${PODMAN_GLOBAL_FLAGS}"
  fi
}

engine() {
  "${ENGINE}" "${ENGINE_GLOBAL[@]}" "$@"
}
