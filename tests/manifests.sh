#!/usr/bin/env bash
# Manifest test: renders every kustomize overlay under k8s/overlays (and k8s/nudge-rbac,
# the Role of scripts/nudge.sh, and the nudger's k8s/nudger and k8s/nudger/cluster),
# validates each rendered object strictly against the Kubernetes 1.30 schema and, with the
# fields newer than 1.15 that the manifests use on purpose removed (seccompProfile), against
# the 1.15 schema, then asserts what each scenario and the nudger need
# (tests/check_manifests.py).
# Needs no cluster. Prints one line per check and ends with `N passed, M failed`.
#
# Usage: bash tests/manifests.sh [-h|--help]
#
# Environment:
#   KUBECTL       command that provides `kustomize` (default: kubectl)
#   VENV          virtualenv for kubernetes-validate + PyYAML, created when missing
#                 (default: .venv at the repository root)
#   K8S_DIR       the kustomize tree to test (default: k8s at the repository root)
#   SCHEMA_VERSION  Kubernetes version of the main schema check (default: 1.30.0)
#   PYTHON        interpreter used to create the virtualenv (default: python3)

set -o errexit -o nounset -o pipefail

readonly VALIDATE_PIN="kubernetes-validate==1.37.0"  # ships schemas 1.25 ... 1.37
readonly LEGACY_PIN="kubernetes-validate==1.18.0"    # ships schemas 1.10 ... 1.18
readonly LEGACY_VERSION="1.15.0"                     # the k3s the scenarios ran on

usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"
}

log() {
  printf '%s\n' "$*" >&2
}

die() {
  log "manifests.sh: $*"
  exit 1
}

cleanup() {
  if [[ -n "${tmp:-}" && -d "${tmp}" ]]; then
    rm -rf -- "${tmp}"
  fi
}

# ensure_venv creates ${VENV} and installs the pinned validators when they are missing.
ensure_venv() {
  if [[ ! -x "${VENV}/bin/python" ]]; then
    log "creating virtualenv ${VENV}"
    "${PYTHON:-python3}" -m venv "${VENV}" || die "cannot create virtualenv ${VENV}"
  fi
  if [[ ! -x "${VENV}/bin/kubernetes-validate" ]]; then
    log "installing ${VALIDATE_PIN} into ${VENV}"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check "${VALIDATE_PIN}" \
      || die "pip install ${VALIDATE_PIN} failed"
  fi
  # The 1.15 schemas come from an older release, kept apart and run with PYTHONPATH.
  if [[ ! -f "${legacy}/kubernetes_validate/__main__.py" ]]; then
    log "installing ${LEGACY_PIN} into ${legacy}"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check --no-deps \
      --target "${legacy}" "${LEGACY_PIN}" || die "pip install ${LEGACY_PIN} failed"
  fi
}

# record STATUS TEXT prints one check line and counts it.
record() {
  if [[ "$1" == ok ]]; then
    passed=$((passed + 1))
    printf 'PASS %s\n' "$2"
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$2"
  fi
}

# validate NAME FILE VERSION [PYTHONPATH] runs kubernetes-validate --strict on FILE; any
# ERROR, WARN (no schema) or FATAL line, or fewer passes than objects, is a failure.
validate() {
  local name="$1" file="$2" version="$3" pythonpath="${4:-}" out objects passes
  objects=$(grep -c '^kind:' "${file}" || true)
  out=$(PYTHONPATH="${pythonpath}" "${VENV}/bin/python" -m kubernetes_validate \
    --strict --kubernetes-version "${version}" "${file}" 2>&1) || true
  passes=$(grep -c '^INFO .* passed for resource' <<<"${out}" || true)
  if [[ "${objects}" -gt 0 && "${passes}" -eq "${objects}" ]] \
    && ! grep -qE '^(ERROR|WARN|FATAL)' <<<"${out}"; then
    record ok "${name}: ${objects} objects valid against Kubernetes ${version} (strict)"
  else
    record fail "${name}: not valid against Kubernetes ${version} (strict)"
    grep -vE '^INFO' <<<"${out}" | sed 's/^/    /'
  fi
}

main() {
  case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) log "unknown argument: $1"; usage >&2; exit 2 ;;
  esac

  local root
  root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
  cd -- "${root}"
  VENV=${VENV:-.venv}
  K8S_DIR=${K8S_DIR:-k8s}
  SCHEMA_VERSION=${SCHEMA_VERSION:-1.30.0}
  local kubectl
  read -r -a kubectl <<<"${KUBECTL:-kubectl}"
  command -v "${kubectl[0]}" >/dev/null || die "${kubectl[0]} not found (set KUBECTL)"
  [[ -d "${K8S_DIR}/overlays" ]] || die "no ${K8S_DIR}/overlays"

  legacy="${VENV}/kubernetes-validate-1.18"
  ensure_venv
  tmp=$(mktemp -d)
  trap cleanup EXIT
  passed=0
  failed=0

  local dir overlay out
  for dir in "${K8S_DIR}"/overlays/*/ "${K8S_DIR}"/nudge-rbac/ "${K8S_DIR}"/nudger/ \
    "${K8S_DIR}"/nudger/cluster/; do
    overlay=${dir#"${K8S_DIR}"/}
    overlay=${overlay%/}
    overlay=${overlay#overlays/}
    overlay=${overlay//\//-} # nudger/cluster: nudger-cluster
    out="${tmp}/${overlay}.yaml"
    if "${kubectl[@]}" kustomize "${dir}" >"${out}" 2>"${tmp}/err"; then
      record ok "${overlay}: kubectl kustomize renders"
      validate "${overlay}" "${out}" "${SCHEMA_VERSION}"
      if "${VENV}/bin/python" tests/check_manifests.py as-1.15 "${out}" >"${tmp}/${overlay}.1.15"; then
        validate "${overlay} without seccompProfile" "${tmp}/${overlay}.1.15" \
          "${LEGACY_VERSION}" "${legacy}"
      else
        record fail "${overlay}: cannot strip fields newer than 1.15"
      fi
    else
      record fail "${overlay}: kubectl kustomize renders"
      sed 's/^/    /' "${tmp}/err"
      rm -f -- "${out}"
    fi
  done

  # The pre-rendered copies for old kubectl clients must match the overlays.
  local stale
  if stale=$(KUBECTL="${KUBECTL:-kubectl}" bash scripts/render-manifests.sh --check 2>&1); then
    record ok "k8s/rendered/*.yaml match the overlays"
  else
    record fail "k8s/rendered/*.yaml match the overlays"
    printf '    %s\n' "${stale}"
  fi

  # A wrapping kustomization, as a script would write one: a new Secret value for the
  # secret-generator overlay and another image.
  mkdir -p "${tmp}/tree" "${tmp}/wrap"
  cp -R "${K8S_DIR}/." "${tmp}/tree/"
  cat >"${tmp}/wrap/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../tree/overlays/secret-generator
secretGenerator:
  - name: hello-path-secret
    behavior: merge
    literals:
      - mysecret=4321
images:
  - name: localhost/hello-path-rs
    newName: example.invalid/hello-path-rs
    newTag: override
EOF
  if ! "${kubectl[@]}" kustomize "${tmp}/wrap" >"${tmp}/wrapped-secret-generator.yaml" 2>"${tmp}/err"; then
    sed 's/^/    /' "${tmp}/err"
    rm -f -- "${tmp}/wrapped-secret-generator.yaml"
  fi

  # The nudge's Role, wrapped into another namespace as a user would.
  mkdir -p "${tmp}/wrap-rbac"
  printf '%s\n' "namespace: shop" "resources:" "  - ../tree/nudge-rbac" >"${tmp}/wrap-rbac/kustomization.yaml"
  "${kubectl[@]}" kustomize "${tmp}/wrap-rbac" >"${tmp}/wrapped-nudge-rbac.yaml" 2>"${tmp}/err" ||
    { sed 's/^/    /' "${tmp}/err"; rm -f -- "${tmp}/wrapped-nudge-rbac.yaml"; }

  # Both variants of the nudger wrapped the same way, with the restart component and
  # another image.
  local variant
  for variant in nudger nudger/cluster; do
    overlay="wrapped-${variant//\//-}"
    mkdir -p "${tmp}/${overlay}"
    printf '%s\n' "namespace: shop" "resources:" "  - ../tree/${variant}" \
      "components:" "  - ../tree/nudger/restart" "images:" "  - name: localhost/hello-path-nudger" \
      "    newName: example.invalid/hello-path-nudger" "    newTag: override" \
      >"${tmp}/${overlay}/kustomization.yaml"
    "${kubectl[@]}" kustomize "${tmp}/${overlay}" >"${tmp}/${overlay}.yaml" 2>"${tmp}/err" ||
      { sed 's/^/    /' "${tmp}/err"; rm -f -- "${tmp}/${overlay}.yaml"; }
  done

  local checks status=0
  checks=$("${VENV}/bin/python" tests/check_manifests.py check "${tmp}" "${K8S_DIR}" 2>&1) || status=$?
  printf '%s\n' "${checks}"
  passed=$((passed + $(grep -c '^PASS ' <<<"${checks}" || true)))
  failed=$((failed + $(grep -c '^FAIL ' <<<"${checks}" || true)))
  if [[ "${status}" -ne 0 ]] && ! grep -q '^FAIL ' <<<"${checks}"; then
    record fail "tests/check_manifests.py exited ${status}"
  fi

  printf '%d passed, %d failed\n' "${passed}" "${failed}"
  [[ "${failed}" -eq 0 ]]
}

main "$@"
