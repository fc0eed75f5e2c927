#!/usr/bin/env bash
# load-image.sh — put the images where the current cluster can run them: the service's
# (IMAGE) and the nudger's (NUDGER_IMAGE), each in turn, the same way.
#
# Local clusters get the image imported, detected from the kubectl context:
#   kind-NAME           kind load image-archive ARCHIVE --name NAME
#   k3d-NAME            k3d image import ARCHIVE -c NAME
#   minikube            minikube image load ARCHIVE -p minikube
#   k3s (node reports a +k3s kubelet)
#                       k3s ctr images import ARCHIVE (sudo unless root) when k3s is on
#                       this machine; otherwise prints what to run on the node
# Other contexts are recognised from their nodes (kind:// provider IDs, minikube labels).
# ARCHIVE is a docker-archive written by the engine under the image's own name, so the
# manifests' `image: localhost/hello-path-rs:0.1.0` (and localhost/hello-path-nudger:0.1.0)
# with IfNotPresent finds it. When an image is a manifest list (build-image.sh
# --platforms), the architecture of the cluster's first node is imported (REF-ARCH, e.g.
# localhost/hello-path-rs:0.1.0-arm64).
#
# With a registry, the image is pushed instead (a manifest list with all its images):
#   REGISTRY/hello-path-rs:TAG, e.g. --registry registry.example.com:5000/demo
# then point the manifests at it: kustomize edit set image localhost/hello-path-rs=REF
#
# Usage:
#   scripts/load-image.sh [--context NAME] [--registry REG] [--image REF]
#                         [--nudger-image REF] [--only service|nudger]
#                         [--engine NAME] [--cluster-type TYPE] [--cluster NAME]
#
#   --context NAME       kubectl context to inspect (default: the current context)
#   --registry REG       push to REG instead of importing (default: $REGISTRY)
#   --image REF          the service's image (default: $IMAGE)
#   --nudger-image REF   the nudger's image (default: $NUDGER_IMAGE)
#   --only WHICH         load one of the two: service or nudger (default: both)
#   --engine NAME        podman, buildah or docker (default: $CONTAINER_ENGINE, else the
#                        first of podman, buildah, docker found on PATH)
#   --cluster-type TYPE  skip detection: kind, k3d, minikube or k3s
#   --cluster NAME       kind/k3d cluster or minikube profile (default: from the context)
#   -h, --help           show this help
#
# Environment:
#   IMAGE               the service's image (default: localhost/hello-path-rs:0.1.0)
#   NUDGER_IMAGE        the nudger's image (default: localhost/hello-path-nudger:0.1.0)
#   REGISTRY            as --registry (default: none, import into the cluster)
#   KUBECTL             kubectl command, may hold arguments (default: kubectl)
#   CONTAINER_ENGINE    podman | buildah | docker (default: auto-detected)
#   PODMAN_GLOBAL_FLAGS extra global podman flags (default: none)
#   PUSH_FLAGS          extra push flags, e.g. --tls-verify=false (default: none)
#   KIND, K3D, MINIKUBE, K3S  commands for those tools (default: their names)
#
# Exit status: 0 loaded or pushed, 1 a step failed, 2 bad arguments, or the cluster could
# not be told or not be reached from here (the message says what to do instead).
set -o errexit -o nounset -o pipefail

# lib/kube.sh: DEFAULT_IMAGE and kube_t, the one kubectl helper ($KUBECTL, --context from
# KUBE_CONTEXT once known, each call bounded by --request-timeout and timeout(1)). The
# messages of lib/common.sh and its option parsing are replaced by this script's own below.
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source-path=SCRIPTDIR source=lib/kube.sh
source "${LIB_DIR}/kube.sh"

REGISTRY_REF=""
IMAGE_REF=""
NUDGER_REF=""
ONLY=""
ENGINE=""
CLUSTER_TYPE=""
CLUSTER=""
WORKDIR=""
# shellcheck source-path=SCRIPTDIR source=lib/engine.sh
source "${LIB_DIR}/engine.sh"
PUSH_ARGS=()
# The images to load, in order (the service's, the nudger's).
REFS=()
# Filled by node_facts: first node's architecture, provider ID, kubelet version, minikube
# profile label.
NODE_ARCH="" NODE_PROVIDER="" NODE_KUBELET="" NODE_MINIKUBE=""
NODE_FACTS_READ=false

usage() {
  sed -n '2,/^[^#]/{/^[^#]/d;/^# shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

log() { printf 'load-image: %s\n' "$*" >&2; }
die() { printf 'load-image: error: %s\n' "$*" >&2; exit 1; }
usage_error() {
  printf 'load-image: error: %s\n' "$*" >&2
  printf "Try 'scripts/load-image.sh --help'.\n" >&2
  exit 2
}
# Cannot act from here: say what to do, exit 2.
cannot() {
  printf 'load-image: %s\n' "$@" >&2
  exit 2
}

cleanup() {
  if [[ -n "${WORKDIR}" && -d "${WORKDIR}" ]]; then
    rm -rf -- "${WORKDIR}"
  fi
}

parse_args() {
  local opt value
  while (($# > 0)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      --context | --registry | --image | --nudger-image | --only | --engine | --cluster-type | --cluster)
        if (($# < 2)) || [[ -z "$2" ]]; then usage_error "$1 needs a value"; fi
        opt=$1 value=$2
        shift 2
        ;;
      --context=* | --registry=* | --image=* | --nudger-image=* | --only=* | --engine=* | --cluster-type=* | --cluster=*)
        opt=${1%%=*} value=${1#*=}
        [[ -n "${value}" ]] || usage_error "${opt} needs a value"
        shift
        ;;
      *) usage_error "unknown argument: $1" ;;
    esac
    case "${opt}" in
      --context) KUBE_CONTEXT=${value} ;;
      --registry) REGISTRY_REF=${value} ;;
      --image) IMAGE_REF=${value} ;;
      --nudger-image) NUDGER_REF=${value} ;;
      --only) ONLY=${value} ;;
      --engine) ENGINE=${value} ;;
      --cluster-type) CLUSTER_TYPE=${value} ;;
      --cluster) CLUSTER=${value} ;;
    esac
  done
  IMAGE_REF=${IMAGE_REF:-${IMAGE:-${DEFAULT_IMAGE}}}
  [[ "${IMAGE_REF}" != *@* ]] || usage_error "IMAGE must be NAME[:TAG], not a digest: ${IMAGE_REF}"
  NUDGER_REF=${NUDGER_REF:-${NUDGER_IMAGE:-localhost/hello-path-nudger:0.1.0}}
  [[ "${NUDGER_REF}" != *@* ]] || usage_error "NUDGER_IMAGE must be NAME[:TAG], not a digest: ${NUDGER_REF}"
  case "${ONLY}" in
    "") REFS=("${IMAGE_REF}" "${NUDGER_REF}") ;;
    service) REFS=("${IMAGE_REF}") ;;
    nudger) REFS=("${NUDGER_REF}") ;;
    *) usage_error "--only takes service or nudger, not '${ONLY}'" ;;
  esac
  REGISTRY_REF=${REGISTRY_REF:-${REGISTRY:-}}
  REGISTRY_REF=${REGISTRY_REF%/}
  ENGINE=${ENGINE:-${CONTAINER_ENGINE:-}}
  case "${ENGINE}" in
    "" | podman | buildah | docker) ;;
    *) usage_error "unknown engine '${ENGINE}' (podman, buildah or docker)" ;;
  esac
  case "${CLUSTER_TYPE}" in
    "" | kind | k3d | minikube | k3s) ;;
    *) usage_error "unknown cluster type '${CLUSTER_TYPE}' (kind, k3d, minikube or k3s)" ;;
  esac
  if [[ -n "${PUSH_FLAGS:-}" ]]; then read -r -a PUSH_ARGS <<<"${PUSH_FLAGS}"; fi
}

# REF -> REF with the tag suffixed by -ARCH (a missing tag counts as latest); the names
# scripts/build-image.sh gives the per-architecture images of a manifest list.
arch_ref() {
  local ref=$1 arch=$2 last=${1##*/}
  if [[ "${last}" == *:* ]]; then echo "${ref}-${arch}"; else echo "${ref}:latest-${arch}"; fi
}

# REF -> REGISTRY/<last path component of REF>, tagged as REF is.
registry_ref() {
  local last=${IMAGE_REF##*/}
  echo "${REGISTRY_REF}/${last}"
}

is_list() {
  case "${ENGINE}" in
    podman) engine manifest exists "$1" >/dev/null 2>&1 ;;
    buildah) buildah manifest inspect "$1" >/dev/null 2>&1 ;;
    docker) return 1 ;;
  esac
}

image_exists() {
  case "${ENGINE}" in
    podman) engine image exists "$1" >/dev/null 2>&1 ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
  esac
}

host_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) uname -m ;;
  esac
}

# Reads a few facts about the first node, once; leaves them empty when it cannot.
node_facts() {
  [[ "${NODE_FACTS_READ}" == false ]] || return 0
  NODE_FACTS_READ=true
  local out
  out=$(kube_t 5 get nodes -o 'jsonpath={.items[0].status.nodeInfo.architecture}{"|"}{.items[0].spec.providerID}{"|"}{.items[0].status.nodeInfo.kubeletVersion}{"|"}{.items[0].metadata.labels.minikube\.k8s\.io/name}' 2>/dev/null) \
    || return 0
  IFS='|' read -r NODE_ARCH NODE_PROVIDER NODE_KUBELET NODE_MINIKUBE <<<"${out}" || true
}

# Sets CLUSTER_TYPE and CLUSTER from the context name, else from the nodes.
detect() {
  if [[ -z "${KUBE_CONTEXT}" ]]; then
    KUBE_CONTEXT=$(kube_t 5 config current-context 2>/dev/null) || KUBE_CONTEXT=""
  fi
  if [[ -z "${CLUSTER_TYPE}" ]]; then
    [[ -n "${KUBE_CONTEXT}" ]] || cannot \
      "no current kubectl context (is '${KUBECTL:-kubectl}' configured?)." \
      "Name one with --context NAME or --cluster-type TYPE, or push to a registry with --registry REG."
    case "${KUBE_CONTEXT}" in
      kind-*) CLUSTER_TYPE=kind ;;
      k3d-*) CLUSTER_TYPE=k3d ;;
      minikube) CLUSTER_TYPE=minikube ;;
      *)
        node_facts
        if [[ "${NODE_PROVIDER}" == kind://* ]]; then
          # kind://<provider>/<cluster>/<node>
          local rest=${NODE_PROVIDER#kind://*/}
          CLUSTER_TYPE=kind
          CLUSTER=${CLUSTER:-${rest%%/*}}
        elif [[ -n "${NODE_MINIKUBE}" ]]; then
          CLUSTER_TYPE=minikube
          CLUSTER=${CLUSTER:-${NODE_MINIKUBE}}
        elif [[ "${NODE_KUBELET}" == *+k3s* ]]; then
          CLUSTER_TYPE=k3s
        fi
        ;;
    esac
  fi
  if [[ -z "${CLUSTER_TYPE}" ]]; then
    cannot "cannot tell what kind of cluster context '${KUBE_CONTEXT}' is${NODE_KUBELET:+ (kubelet ${NODE_KUBELET})}${NODE_KUBELET:- (its nodes could not be read)}." \
      "Name it:  scripts/load-image.sh --cluster-type kind|k3d|minikube|k3s [--cluster NAME]" \
      "or push to a registry it can pull from:  scripts/load-image.sh --registry REGISTRY" \
      "or import an archive with the cluster's own tool:  ${ENGINE} save -o hello-path-rs.tar ${IMAGE_REF}"
  fi
  # Default names: from a kind-NAME / k3d-NAME context, else each tool's default.
  case "${CLUSTER_TYPE}" in
    kind | k3d)
      if [[ -z "${CLUSTER}" && "${KUBE_CONTEXT}" == "${CLUSTER_TYPE}"-* ]]; then
        CLUSTER=${KUBE_CONTEXT#"${CLUSTER_TYPE}"-}
      fi
      if [[ -z "${CLUSTER}" && "${CLUSTER_TYPE}" == kind ]]; then CLUSTER=kind; fi
      if [[ -z "${CLUSTER}" && "${CLUSTER_TYPE}" == k3d ]]; then CLUSTER=k3s-default; fi
      ;;
    minikube) CLUSTER=${CLUSTER:-${KUBE_CONTEXT:-minikube}} ;;
  esac
  log "context ${KUBE_CONTEXT:-(none)}: ${CLUSTER_TYPE}${CLUSTER:+ cluster ${CLUSTER}}"
}

# Chooses the local image to export: IMAGE itself, or the per-architecture image of a
# manifest list for the cluster's node architecture.
source_image() {
  if is_list "${IMAGE_REF}"; then
    node_facts
    local arch=${NODE_ARCH:-$(host_arch)} ref
    ref=$(arch_ref "${IMAGE_REF}" "${arch}")
    image_exists "${ref}" || die "${IMAGE_REF} is a manifest list but ${ref} (for ${arch} nodes) is not in local storage"
    log "${IMAGE_REF} is a manifest list: using ${ref} for ${arch} nodes"
    echo "${ref}"
  else
    image_exists "${IMAGE_REF}" || die "image ${IMAGE_REF} not found: build it first (scripts/build-image.sh)"
    echo "${IMAGE_REF}"
  fi
}

# Writes a docker-archive of the chosen image, named IMAGE_REF, to WORKDIR (NAME.tar, NAME
# the image's name without registry or tag); prints its path.
write_archive() {
  local name=${IMAGE_REF##*/}
  local src archive="${WORKDIR}/${name%%:*}.tar"
  src=$(source_image)
  case "${ENGINE}" in
    podman) engine push -q "${src}" "docker-archive:${archive}:${IMAGE_REF}" >&2 ;;
    buildah) buildah push -q "${src}" "docker-archive:${archive}:${IMAGE_REF}" >&2 ;;
    docker)
      [[ "${src}" == "${IMAGE_REF}" ]] || docker tag "${src}" "${IMAGE_REF}" >&2
      docker save -o "${archive}" "${IMAGE_REF}" >&2
      ;;
  esac || die "cannot write an archive of ${src}"
  [[ -s "${archive}" ]] || die "the engine wrote no archive for ${src}"
  echo "${archive}"
}

load_into_cluster() {
  local archive
  case "${CLUSTER_TYPE}" in
    kind)
      archive=$(write_archive)
      log "kind load image-archive (cluster ${CLUSTER})"
      ${KIND:-kind} load image-archive "${archive}" --name "${CLUSTER}" >&2 || die "kind load failed"
      ;;
    k3d)
      archive=$(write_archive)
      log "k3d image import (cluster ${CLUSTER})"
      ${K3D:-k3d} image import "${archive}" -c "${CLUSTER}" >&2 || die "k3d image import failed"
      ;;
    minikube)
      archive=$(write_archive)
      log "minikube image load (profile ${CLUSTER})"
      ${MINIKUBE:-minikube} image load "${archive}" -p "${CLUSTER}" >&2 || die "minikube image load failed"
      ;;
    k3s)
      if ! command -v "${K3S:-k3s}" >/dev/null 2>&1; then
        cannot "context ${KUBE_CONTEXT} is k3s, but k3s is not on this machine: import on each node instead:" \
          "  ${ENGINE} save -o hello-path-rs.tar ${IMAGE_REF}" \
          "  scp hello-path-rs.tar NODE: && ssh NODE sudo k3s ctr images import hello-path-rs.tar" \
          "or push to a registry the nodes can pull from: scripts/load-image.sh --registry REGISTRY"
      fi
      archive=$(write_archive)
      local sudo=()
      [[ "$(id -u)" == 0 ]] || sudo=(sudo)
      log "${sudo[*]:+${sudo[*]} }k3s ctr images import"
      "${sudo[@]}" "${K3S:-k3s}" ctr images import "${archive}" >&2 || die "k3s ctr images import failed"
      ;;
  esac
  printf 'loaded %s into %s%s\n' "${IMAGE_REF}" "${CLUSTER_TYPE}" "${CLUSTER:+ ${CLUSTER}}"
}

push_to_registry() {
  local dest
  dest=$(registry_ref)
  case "${ENGINE}" in
    podman | buildah)
      local tool=(engine)
      [[ "${ENGINE}" == buildah ]] && tool=(buildah)
      if is_list "${IMAGE_REF}"; then
        log "pushing the manifest list ${IMAGE_REF} and all its images to ${dest}"
        "${tool[@]}" manifest push --all "${PUSH_ARGS[@]}" "${IMAGE_REF}" "docker://${dest}" >&2 \
          || die "manifest push to ${dest} failed"
      else
        image_exists "${IMAGE_REF}" || die "image ${IMAGE_REF} not found: build it first (scripts/build-image.sh)"
        log "pushing ${IMAGE_REF} to ${dest}"
        "${tool[@]}" push "${PUSH_ARGS[@]}" "${IMAGE_REF}" "docker://${dest}" >&2 || die "push to ${dest} failed"
      fi
      ;;
    docker)
      # docker keeps no local manifest list: push each per-architecture image, then join
      # them in the registry.
      local arch ref pushed=()
      for arch in amd64 arm64; do
        ref=$(arch_ref "${IMAGE_REF}" "${arch}")
        if image_exists "${ref}"; then
          docker tag "${ref}" "${dest}-${arch}" || die "docker tag ${ref} ${dest}-${arch} failed"
          docker push "${PUSH_ARGS[@]}" "${dest}-${arch}" >&2 || die "push of ${ref} failed"
          pushed+=("${dest}-${arch}")
        fi
      done
      if ((${#pushed[@]} > 0)); then
        log "joining ${pushed[*]} as ${dest}"
        docker buildx imagetools create -t "${dest}" "${pushed[@]}" >&2 || die "docker buildx imagetools create failed"
      else
        image_exists "${IMAGE_REF}" || die "image ${IMAGE_REF} not found: build it first (scripts/build-image.sh)"
        docker tag "${IMAGE_REF}" "${dest}" || die "docker tag ${IMAGE_REF} ${dest} failed"
        docker push "${PUSH_ARGS[@]}" "${dest}" >&2 || die "push to ${dest} failed"
      fi
      ;;
  esac
  printf 'pushed %s\n' "${dest}"
  log "point the manifests at it: (cd k8s/overlays/NAME && kustomize edit set image ${IMAGE_REF%:*}=${dest})"
}

main() {
  parse_args "$@"
  pick_engine
  trap cleanup EXIT
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/load-image.XXXXXX")
  local ref
  [[ -n "${REGISTRY_REF}" ]] || detect
  for ref in "${REFS[@]}"; do
    IMAGE_REF=${ref}
    if [[ -n "${REGISTRY_REF}" ]]; then
      push_to_registry
    else
      load_into_cluster
    fi
  done
}

main "$@"
