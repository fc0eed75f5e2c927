#!/usr/bin/env bash
# kube.sh — the --kube mode of the scenario scripts: every kubectl call goes through
# `kube_cmd` (by way of kube, kube_t, kube_poll), which honours KUBECTL and --context; each
# scenario runs in a namespace of its own, which cleanup deletes. Sourced after common.sh;
# it sources kube-pods.sh (the app's pods, rollouts and the probe pod).
#
#   kube_cmd / kube / kube_t / kube_poll       the one kubectl command line, bounded in loops
#   kube_preflight                             one line and exit 2 when no cluster answers
#   kube_render / kube_kustomize               an overlay of k8s/, rendered for a namespace
#   kube_deploy / kube_apply_app               ... and applied into a new namespace (NS)
#   kube_secret_set                            the change: kubectl patch of the Secret
#   kube_nudge                                 ... delivered now: scripts/nudge.sh (--nudge)
#   kube_deploy_nudger / kube_nudger_report    ... or by the controller (--nudger), deployed
#                                              into NS first, and what it logged
#
# Environment read here (defaults in brackets):
#   KUBECTL          kubectl command, may hold spaces, e.g. "k3s kubectl" or oc [kubectl]
#   KUSTOMIZE        a kustomize binary to render k8s/overlays with (KUSTOMIZE build DIR)
#                    [unset: $KUBECTL kustomize, else a `kustomize` on PATH]
#   IMAGE            image for the pods and the probe pod [localhost/hello-path-rs:0.1.0]
#   NUDGER_IMAGE     image of the controller (--nudger) [localhost/hello-path-nudger:0.1.0]
#   KUBE_TIMEOUT     seconds a rollout may take [120]
#   SECRET_TIMEOUT   seconds to wait for the kubelet to deliver a changed Secret [180]
#   NUDGE_TIMEOUT    the same after scripts/nudge.sh (--nudge) or with the controller
#                    (--nudger) [20: it takes about a second; the kubelet's own sync comes
#                    every minute or so]
#   KEEP_NAMESPACE   1 = leave the scenario's namespace in place (debugging) [0]
# shellcheck shell=bash
# Variables set here are read by the scripts that source this file:
# shellcheck disable=SC2034

if [[ -n "${HELLO_PATH_KUBE_LOADED:-}" ]]; then
  return 0
fi
HELLO_PATH_KUBE_LOADED=1

readonly DEFAULT_IMAGE=localhost/hello-path-rs:0.1.0
readonly DEFAULT_NUDGER_IMAGE=localhost/hello-path-nudger:0.1.0
readonly APP_LABEL=app.kubernetes.io/name=hello-path-rs

KUBE_TIMEOUT=${KUBE_TIMEOUT:-120}
SECRET_TIMEOUT=${SECRET_TIMEOUT:-180}
NUDGE_TIMEOUT=${NUDGE_TIMEOUT:-20}
# How often the waits of a nudged run poll (seconds): the figure is the delivery, not the poll.
readonly NUDGE_POLL=0.2
KUBE_SERVER_MINOR=0
APPLY_FLAGS=()
# The namespaces this script created (kube_create_namespace), for cleanup.
CREATED_NAMESPACES=()

# kube_cmd [GLOBAL_FLAG...] — sets KUBE_CMD to $KUBECTL (default kubectl; may hold spaces,
# e.g. "k3s kubectl"), the flags given, then --context NAME when KUBE_CONTEXT is set. The
# one place that builds a kubectl command line: kube, kube_t and kube_poll use it, and so
# do scripts/load-image.sh and scripts/render-manifests.sh.
kube_cmd() {
  read -r -a KUBE_CMD <<<"${KUBECTL:-kubectl}"
  ((${#KUBE_CMD[@]})) || KUBE_CMD=(kubectl)
  KUBE_CMD+=("$@")
  if [[ -n "${KUBE_CONTEXT}" ]]; then
    KUBE_CMD+=(--context "${KUBE_CONTEXT}")
  fi
}
# kube ARG... — every kubectl call of the scripts goes through here (or kube_t, kube_poll).
kube() {
  local -a KUBE_CMD
  kube_cmd
  "${KUBE_CMD[@]}" "$@"
}

# kube_t SECONDS ARG... — kube, bounded twice: each API request by kubectl's own
# --request-timeout=SECONDS (a global flag of every kubectl, 1.15 included), the whole
# command (a credential plugin, a DNS lookup, a watch, several requests) by timeout(1)
# 5 s later, when there is one. For every call inside a wait loop, so that a hung request
# cannot stall the loop nor outlast its timeout.
kube_t() {
  local limit=$1
  shift
  local -a KUBE_CMD
  kube_cmd "--request-timeout=${limit}s"
  if command -v timeout >/dev/null 2>&1; then
    timeout -k 2 $((limit + 5)) "${KUBE_CMD[@]}" "$@"
  else
    "${KUBE_CMD[@]}" "$@"
  fi
}
# kube_poll ARG... — kube_t with the bound of one poll: 3 s per request.
kube_poll() { kube_t 3 "$@"; }


# kube_preflight — one clear line and exit 2 (within seconds) when no cluster answers.
kube_preflight() {
  local -a cmd
  read -r -a cmd <<<"${KUBECTL:-kubectl}"
  command -v "${cmd[0]:-kubectl}" >/dev/null 2>&1 ||
    die 2 "no cluster: '${cmd[0]:-kubectl}' (KUBECTL) is not on PATH"
  local out err
  local -a KUBE_CMD
  kube_cmd
  err="${WORK_DIR}/preflight.err"
  if command -v timeout >/dev/null 2>&1; then
    # --request-timeout bounds the request; timeout(1) bounds everything else (a kubectl
    # exec credential plugin, a DNS lookup of the server name).
    out=$(timeout 15 "${KUBE_CMD[@]}" get --raw /version --request-timeout=5s 2>"${err}") || out=""
  else
    out=$("${KUBE_CMD[@]}" get --raw /version --request-timeout=5s 2>"${err}") || out=""
  fi
  if [[ "${out}" != *gitVersion* ]]; then
    local why
    why=$(grep -v '^[[:space:]]*$' "${err}" 2>/dev/null | tail -n 1 | cut -c1-200)
    die 2 "no cluster reachable with '${KUBECTL:-kubectl}${KUBE_CONTEXT:+ --context ${KUBE_CONTEXT}}' (get --raw /version): ${why:-no answer within 5s}"
  fi
  local version minor
  version=$(printf '%s' "${out}" | sed -n 's/.*"gitVersion"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
  minor=$(printf '%s' "${out}" | sed -n 's/.*"minor"[[:space:]]*:[[:space:]]*"\([0-9]*\).*/\1/p')
  KUBE_SERVER_MINOR=${minor:-0}
  log "cluster: Kubernetes ${version:-?}${KUBE_CONTEXT:+ (context ${KUBE_CONTEXT})}; kubectl: ${KUBECTL:-kubectl}"
  if ((KUBE_SERVER_MINOR > 0 && KUBE_SERVER_MINOR < 19)); then
    # The manifests carry securityContext.seccompProfile (1.19+) next to the annotation
    # older clusters read; kubectl's schema check would refuse the unknown field, the API
    # server of those versions drops it.
    APPLY_FLAGS=(--validate=false)
    log "Kubernetes 1.${KUBE_SERVER_MINOR} < 1.19: applying with --validate=false (seccompProfile is unknown there; the annotation applies)"
  fi
}

# kube_render OVERLAY NS OUT_DIR — renders k8s/overlays/OVERLAY for namespace NS into
#   OUT_DIR/secret.yaml (the Secret), OUT_DIR/app.yaml (everything else but the Namespace)
#   and OUT_DIR/ns-labels (the Namespace's labels, k=v per line). The objects lose their
#   `namespace:` (they are applied with -n NS) and take $IMAGE when set. When kustomize
#   cannot render the overlay (the one in kubectl before 1.24 is too old for it), the copy
#   pre-rendered by scripts/render-manifests.sh, k8s/rendered/OVERLAY.yaml, is used.
kube_render() {
  local overlay=$1 ns=$2 out=$3
  local src="${REPO_ROOT}/k8s/overlays/${overlay}" pre="${REPO_ROOT}/k8s/rendered/${overlay}.yaml"
  [[ -f "${src}/kustomization.yaml" ]] || die "no overlay k8s/overlays/${overlay}"
  mkdir -p "${out}"
  if ! kube_kustomize "${src}" >"${out}/overlay.yaml" 2>"${out}/kustomize.err"; then
    [[ -f "${pre}" ]] ||
      die "cannot render k8s/overlays/${overlay}: $(tail -n 1 "${out}/kustomize.err") (and no ${pre})"
    log "kustomize cannot render k8s/overlays/${overlay} ($(tail -n 1 "${out}/kustomize.err" | cut -c1-80)); using k8s/rendered/${overlay}.yaml"
    cp "${pre}" "${out}/overlay.yaml"
  fi
  # Split: the Namespace's labels (this run creates its own namespace), the Secret, the rest.
  # Top-level `metadata.namespace` lines go (the objects are applied with -n NS).
  awk -v nsfile="${out}/ns-labels" -v secret="${out}/secret.yaml" -v app="${out}/app.yaml" \
    -v image="${IMAGE:-}" -v default_image="${DEFAULT_IMAGE}" '
    function flush() {
      if (doc != "") {
        if (doc ~ /(^|\n)kind: Namespace(\n|$)/) {
          n = split(doc, lines, "\n"); inl = 0
          for (i = 1; i <= n; i++) {
            if (lines[i] ~ /^  labels:/) { inl = 1; continue }
            if (inl && lines[i] ~ /^    [^ ]/) {
              l = lines[i]; sub(/^    /, "", l); sub(/: /, "=", l); gsub(/"/, "", l)
              print l > nsfile
            } else if (inl) inl = 0
          }
        } else if (doc ~ /(^|\n)kind: Secret(\n|$)/) printf "---\n%s\n", doc > secret
        else printf "---\n%s\n", doc > app
      }
      doc = ""; inmeta = 0
    }
    /^---/ { flush(); next }
    /^#/ { next }
    /^metadata:/ { inmeta = 1 }
    /^[^ ]/ && !/^metadata:/ { inmeta = 0 }
    inmeta && /^  namespace: / { next }
    image != "" { gsub("image: " default_image "$", "image: " image) }
    { doc = (doc == "" ? $0 : doc "\n" $0) }
    END { flush() }' "${out}/overlay.yaml"
  touch "${out}/ns-labels" "${out}/secret.yaml" "${out}/app.yaml"
}

# kube_kustomize DIR — renders a kustomization: with $KUSTOMIZE when set, else with
# `$KUBECTL kustomize` (through `kube`); when that fails (kubectl < 1.22 embeds a kustomize
# too old for the overlays' `labels:` and `patches:`, e.g. `k3s kubectl` 1.15), with a
# standalone `kustomize` found on PATH. Rendering needs no cluster. (No other kubectl is
# tried behind KUBECTL's back: kube_render falls back to k8s/rendered/ instead, and
# KUSTOMIZE names a newer kustomize.)
kube_kustomize() {
  if [[ -n "${KUSTOMIZE:-}" ]]; then
    local -a k
    read -r -a k <<<"${KUSTOMIZE}"
    "${k[@]}" build "$1"
    return
  fi
  local out="${WORK_DIR}/kustomize.out" first="${WORK_DIR}/kustomize-first.err"
  if kube kustomize "$1" >"${out}" 2>"${first}" ||
    { command -v kustomize >/dev/null 2>&1 && kustomize build "$1" >"${out}" 2>/dev/null; }; then
    cat "${out}"
    return 0
  fi
  cat "${first}" >&2
  return 1
}

# kube_namespace_name NAME — sets NS to a fresh hello-path-NAME-XXXXX (not created yet).
kube_namespace_name() {
  local suffix
  suffix=$(LC_ALL=C tr -dc 'a-z0-9' </dev/urandom 2>/dev/null | head -c 5 || true)
  [[ -n "${suffix}" ]] || suffix=$((RANDOM % 100000))
  NS="hello-path-$1-${suffix}"
}
# kube_create_namespace — creates NS; cleanup deletes it.
kube_create_namespace() {
  kube create namespace "${NS}" >/dev/null || die "cannot create namespace ${NS}"
  CREATED_NAMESPACES+=("${NS}")
  log "namespace ${NS} created (deleted again on exit)"
}

# kube_deploy OVERLAY START_VALUE [NAME] — in a new namespace hello-path-NAME-XXXXX (NAME
#   defaults to the scenario): renders the overlay, applies its Secret with
#   mysecret=START_VALUE (empty: as the overlay has it), then the rest. Sets NS, RENDER_DIR.
kube_deploy() {
  local overlay=$1 value=$2
  kube_namespace_name "${3:-${SCRIPT_NAME}}"
  RENDER_DIR="${WORK_DIR}/render-${NS}"
  kube_render "${overlay}" "${NS}" "${RENDER_DIR}"
  kube_create_namespace
  local -a labels=()
  mapfile -t labels <"${RENDER_DIR}/ns-labels"
  if ((${#labels[@]})); then
    kube label namespace "${NS}" "${labels[@]}" --overwrite >/dev/null ||
      warn "cannot label namespace ${NS} with ${labels[*]}"
  fi
  if [[ -s "${RENDER_DIR}/secret.yaml" ]]; then
    kube apply "${APPLY_FLAGS[@]}" -n "${NS}" -f "${RENDER_DIR}/secret.yaml" >/dev/null ||
      die "kubectl apply of the Secret of k8s/overlays/${overlay} failed"
    if [[ -n "${value}" ]]; then
      kube_secret_set "${value}"
    fi
  fi
  kube_apply_app
  log "deployed k8s/overlays/${overlay} into ${NS}"
}
kube_apply_app() {
  kube apply "${APPLY_FLAGS[@]}" -n "${NS}" -f "${RENDER_DIR}/app.yaml" >/dev/null ||
    die "kubectl apply -f ${RENDER_DIR}/app.yaml failed"
}

# kube_secret_set VALUE — sets key mysecret of Secret hello-path-secret in NS (a merge patch
# with stringData: works on every Kubernetes version, no --dry-run needed).
kube_secret_set() {
  kube -n "${NS}" patch secret hello-path-secret --type merge \
    -p "{\"stringData\":{\"mysecret\":\"$1\"}}" >/dev/null ||
    die "cannot patch secret hello-path-secret in ${NS}"
  log "Secret ${NS}/hello-path-secret: mysecret set to a new value ($(printf '%s' "$1" | sed 's/./*/g'))"
}

# --nudge and --nudger, for the scenarios that have nudged variants (reload, rotate):
#   nudge_arg ARG takes one (for a script's extra_arg: sets NUDGE or NUDGER, EXTRA_SHIFT),
#   nudge_check refuses them without --kube, or together (for its check_args).
#   NUDGE_SUFFIX is the rows' suffix: "", -nudge or -nudger; NUDGER_NAME names what nudges,
#   in notes.
NUDGE=false NUDGER=false NUDGE_SUFFIX="" NUDGER_NAME=""
nudge_arg() {
  case "$1" in
    --nudge) NUDGE=true NUDGE_SUFFIX=-nudge NUDGER_NAME=nudge.sh EXTRA_SHIFT=1 ;;
    --nudger) NUDGER=true NUDGE_SUFFIX=-nudger NUDGER_NAME="the nudger" EXTRA_SHIFT=1 ;;
    *) return 1 ;;
  esac
}
nudge_check() {
  if [[ "${NUDGE}" == true && "${NUDGER}" == true ]]; then
    usage_error "--nudge and --nudger are two ways to deliver the change: pick one"
  fi
  if [[ "${NUDGE_SUFFIX}" != "" && "${MODE}" != kube ]]; then
    usage_error "${NUDGE_SUFFIX/-/--} needs --kube: locally the kubelet-style update is written at once"
  fi
}

# kube_nudge — runs scripts/nudge.sh for Secret hello-path-secret in NS, through the same
#   KUBECTL and --context: it annotates the running pods that mount the Secret as a volume,
#   so that the kubelet rewrites their copy now rather than on its next periodic sync, and
#   names the pods it cannot help (env, envFrom, subPath). Logs its lines; sets, from them,
#   NUDGED and CANNOT_HELP (its last line: NUDGE ... nudged=N ... cannot_help=N ...),
#   CANNOT_HELP_WHY (the distinct reasons of its cannot-help lines, e.g. "env MYSECRET in
#   container hello-path") and NUDGE_MS (how long it ran). Dies when it fails.
kube_nudge() {
  local out="${WORK_DIR}/nudge-${NS}.out" err="${WORK_DIR}/nudge-${NS}.err" rc=0 start last
  local -a ctx=()
  [[ -z "${KUBE_CONTEXT}" ]] || ctx=(--context "${KUBE_CONTEXT}")
  start=$(now_ms)
  KUBECTL=${KUBECTL:-kubectl} bash "${SCRIPTS_DIR}/nudge.sh" hello-path-secret -n "${NS}" "${ctx[@]}" \
    >"${out}" 2>"${err}" </dev/null || rc=$?
  NUDGE_MS=$(($(now_ms) - start))
  sed 's/^/    nudge.sh: /' "${out}"
  last=$(tail -n 1 "${out}")
  if ((rc != 0)) || [[ "${last}" != "NUDGE "* ]]; then
    die "scripts/nudge.sh hello-path-secret -n ${NS}${ctx[*]:+ ${ctx[*]}} exited ${rc}: $(grep -v '^[[:space:]]*$' "${err}" | tail -n 1)"
  fi
  NUDGED=$(sed -n 's/.* nudged=\([0-9]*\) .*/\1/p' <<<"${last}")
  CANNOT_HELP=$(sed -n 's/.* cannot_help=\([0-9]*\) .*/\1/p' <<<"${last}")
  CANNOT_HELP_WHY=$(sed -n 's/^cannot-help pod\/[^:]*: \(.*\); cure: .*/\1/p' "${out}" | sort -u | paste -sd';' - | sed 's/;/; /g')
  log "scripts/nudge.sh ran $(fmt_secs "${NUDGE_MS}")s: nudged ${NUDGED:-?} pod(s), cannot help ${CANNOT_HELP:-?}"
}

# kube_deploy_nudger — deploys the controller, k8s/nudger (its ServiceAccount, Role and
#   RoleBinding, Deployment), into NS, so that it watches NS's Secrets and ConfigMaps, and
#   waits until it is Ready (its first list complete). Rendered as kube_render renders an
#   overlay (k8s/rendered/nudger.yaml when kustomize cannot), its RoleBinding's subject
#   moved to NS, its image $NUDGER_IMAGE when set. Dies, saying why, when it does not start.
kube_deploy_nudger() {
  local src="${REPO_ROOT}/k8s/nudger" pre="${REPO_ROOT}/k8s/rendered/nudger.yaml"
  local out="${WORK_DIR}/nudger-${NS}.yaml" raw="${WORK_DIR}/nudger-${NS}.raw"
  if ! kube_kustomize "${src}" >"${raw}" 2>"${raw}.err"; then
    [[ -f "${pre}" ]] || die "cannot render k8s/nudger: $(tail -n 1 "${raw}.err")"
    cp "${pre}" "${raw}"
  fi
  # Top-level metadata.namespace goes (applied with -n NS); the one left, the subject's,
  # becomes NS.
  awk -v ns="${NS}" -v image="${NUDGER_IMAGE:-}" -v default_image="${DEFAULT_NUDGER_IMAGE}" '
    /^metadata:/ { inmeta = 1 }
    /^[^ ]/ && !/^metadata:/ { inmeta = 0 }
    inmeta && /^  namespace: / { next }
    /^ +namespace: / { sub(/namespace: .*/, "namespace: " ns) }
    image != "" { gsub("image: " default_image "$", "image: " image) }
    { print }' "${raw}" >"${out}"
  kube apply "${APPLY_FLAGS[@]}" -n "${NS}" -f "${out}" >/dev/null ||
    die "kubectl apply of k8s/nudger into ${NS} failed"
  log "deployed the nudger (k8s/nudger, image ${NUDGER_IMAGE:-${DEFAULT_NUDGER_IMAGE}}) into ${NS}"
  wait_for "the nudger in ${NS} to be Ready (its first list of Secrets, ConfigMaps and pods done)" \
    "${KUBE_TIMEOUT}" 0.5 _nudger_ready ||
    die "the nudger in ${NS} is not Ready: $(_nudger_state)"
}
_nudger_ready() {
  local st
  st=$(_nudger_state)
  if [[ "${st}" =~ ErrImagePull|ImagePullBackOff|ErrImageNeverPull|InvalidImageName ]]; then
    fatal_later "the nudger in ${NS} cannot get its image ${NUDGER_IMAGE:-${DEFAULT_NUDGER_IMAGE}}: ${st} (${IMAGE_HINT})"
  fi
  kube_t 5 -n "${NS}" rollout status deployment/hello-path-nudger --timeout=3s >/dev/null 2>&1
}
# _nudger_state — the nudger pod's waiting reason and its last log line, for a message.
_nudger_state() {
  local reason last
  reason=$(kube_poll -n "${NS}" get pods -l app.kubernetes.io/name=hello-path-nudger \
    -o jsonpath='{.items[0].status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)
  last=$(kube_poll -n "${NS}" logs deployment/hello-path-nudger 2>/dev/null | tail -n 1 || true)
  printf '%s\n' "${reason:-no waiting reason}${last:+; its log: ${last}}"
}

# kube_nudger_report [SKIP] — what the nudger in NS logged about Secret hello-path-secret
#   (nudger_said), its first SKIP nudges left out (those of an earlier change); logs its
#   lines about the Secret.
kube_nudger_report() {
  local log="${WORK_DIR}/nudger-${NS}.log"
  kube_poll -n "${NS}" logs deployment/hello-path-nudger >"${log}" 2>/dev/null ||
    warn "cannot read the log of the nudger in ${NS}"
  grep -E 'nudged pod/|cannot-help |hello-path-secret' "${log}" | sed 's/^/    nudger: /' || true
  nudger_said "${log}" hello-path-secret "${1:-0}"
}

# nudger_said LOG SECRET [SKIP] — from a log of hello-path-nudger: NUDGED (the pods it
#   annotated for Secret SECRET, less SKIP), CANNOT_HELP (the pods it named as consumers of
#   SECRET it cannot help: env, envFrom, subPath) and CANNOT_HELP_WHY (their distinct
#   reasons), as kube_nudge sets them from nudge.sh. Its lines:
#     nudged pod/POD in namespace NS: secret.nudge.hello-path-rs/SECRET=RV (...)
#     cannot-help Secret NS/SECRET (resourceVersion RV): OWNER (pods A, B): WHY; cure: ...
#   (OWNER (pod A), or pod/A for a pod without owner).
nudger_said() {
  local log=$1 name=$2 said
  NUDGED=$(($(grep -F "secret.nudge.hello-path-rs/${name}=" "${log}" | grep -c 'nudged pod/' || true) - ${3:-0}))
  said=$(awk -v obj="/${name} (resourceVersion " '
    index($0, "cannot-help Secret ") && index($0, obj) {
      rest = substr($0, index($0, obj) + length(obj)); rest = substr(rest, index(rest, "): ") + 3)
      who = substr(rest, 1, index(rest, ": ") - 1); rest = substr(rest, index(rest, ": ") + 2)
      why = substr(rest, 1, index(rest, "; cure: ") - 1)
      if (match(who, /[(]pods? [^)]*[)]/)) n += split(substr(who, RSTART, RLENGTH), parts, ",")
      else n++
      if (!(why in seen)) { seen[why] = 1; whys = whys (whys == "" ? "" : "; ") why }
    }
    END { printf "%d|%s\n", n, whys }' "${log}")
  CANNOT_HELP=${said%%|*} CANNOT_HELP_WHY=${said#*|}
}

# The clean-up of the --kube mode: deletes the namespaces this script created, without
# waiting for them (the API server removes what is in them), each call bounded. Says what
# it did through cleanup_note, and is never stopped by a failure (see cleanup).
_kube_cleanup() {
  local ns
  for ns in "${CREATED_NAMESPACES[@]}"; do
    if [[ "${KEEP_NAMESPACE:-0}" == 1 ]]; then
      cleanup_note "KEEP_NAMESPACE=1: leaving namespace ${ns} (delete it with: kubectl delete namespace ${ns})"
    elif kube_t 10 delete namespace "${ns}" --wait=false --ignore-not-found >/dev/null 2>&1; then
      cleanup_note "deleted namespace ${ns} (in the background: --wait=false)"
    else
      cleanup_note "warning: could not delete namespace ${ns}: delete it by hand"
    fi
  done
  CREATED_NAMESPACES=()
  return 0
}
cleanup_add _kube_cleanup

# The app's pods, rollouts and the probe pod.
# shellcheck source=scripts/lib/kube-pods.sh
source "${LIB_DIR}/kube-pods.sh"
