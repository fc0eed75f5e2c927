#!/usr/bin/env bash
# nudge.sh — have the kubelet deliver a changed Secret or ConfigMap to the running pods now,
# instead of on its next periodic sync of each pod (a minute or more later).
#
# The kubelet rewrites a pod's Secret and ConfigMap volumes whenever it syncs the pod, and
# syncs a pod as soon as the pod object changes. So this annotates each running pod that
# mounts the object as a volume (directly or through a projected volume, in any container,
# init containers too) with its resourceVersion: `secret.nudge.hello-path-rs/NAME: "RV"`,
# `configmap.nudge.hello-path-rs/NAME` for a ConfigMap (a name longer than 63 characters
# becomes its first 52, "-" and 10 hex digits of its sha256).
# Pods only, never a pod template: no new pod, no rollout, no restart. A pod that has the
# current resourceVersion is left alone: a second run without a change changes nothing.
# What the kubelet cannot change is reported with the cure: `env` (secretKeyRef,
# configMapKeyRef), `envFrom` and `subPath` consumers keep the old value until their pod is
# replaced (`kubectl rollout restart` of the Deployment, StatefulSet or DaemonSet; else the
# direct owner is named). A pod annotated `nudge.hello-path-rs/ignore: "true"` is left
# alone (skipped), as the controller hello-path-nudger leaves it.
# Any workload; needs only bash 4.4 or later, coreutils and kubectl (1.15 or later).
#
# Usage: scripts/nudge.sh [secret/]NAME|configmap/NAME [-n|--namespace NS] [--context CONTEXT]
#                         [--dry-run] [-h|--help]
#   NAME, secret/NAME   the Secret NAME; configmap/NAME (or cm/NAME): the ConfigMap NAME
#   -n, --namespace     its namespace (default: the kubectl context's)
#   --context CONTEXT   the kubeconfig context (default: the current one)
#   --dry-run           read what is needed and say what would be done; patch nothing
#
# Output: one line a pod, its first word what happened — nudged (would-nudge with
# --dry-run), unchanged, cannot-help (with the cure; a pod can be nudged and reported),
# skipped (opted out, not running, terminating, or no container mounts the volume), gone
# (deleted between the list and the patch) — then a sentence, then the last line:
#   NUDGE secret=NAME nudged=N unchanged=N cannot_help=N skipped=N namespace=NS
#         resource_version=RV dry_run=true|false          (configmap=NAME for a ConfigMap)
#
# Environment:
#   KUBECTL                 the kubectl command; may hold spaces, e.g. "k3s kubectl" [kubectl]
#   NUDGE_REQUEST_TIMEOUT   seconds an API request may take (--request-timeout); a whole
#                           kubectl call is cut off after 4 times that plus 5 s [10]
#
# Permissions (the Role of k8s/nudge-rbac): get secrets (or configmaps); list, get and patch
# pods (`kubectl patch` GETs each pod first); get replicasets.apps (to name a pod's
# Deployment).
#
# Exit codes:
#   0  did what could be done (also: nothing to nudge, or only consumers it cannot help)
#   1  the Secret or ConfigMap, or its namespace, was not found, or the API refused a
#      request: one line on stderr naming the verb and the resource, e.g. `nudge.sh: error:
#      the API refused to patch pods/web-1 in namespace shop (Forbidden)`, after doing what
#      could be done
#   2  bad arguments, or no cluster reachable
set -o errexit -o nounset -o pipefail

readonly PROG=nudge.sh
readonly KEY_DOMAIN=nudge.hello-path-rs # after "secret." or "configmap."
readonly IGNORE=nudge.hello-path-rs/ignore # a pod annotated so ("true") is left alone
readonly NAME_MAX=63 # the name part of an annotation key
readonly HASH_LEN=10
readonly DNS_LABEL='[a-z0-9]([-a-z0-9]*[a-z0-9])?'

# What to nudge: the argument; its kind, kubectl's resource and the pod spec's field for it.
TARGET="" NAME="" KIND=Secret RES=secret FIELD=secret
NS="" CONTEXT="" DRY_RUN=false REQUEST_TIMEOUT=10 TMP="" KEY="" RV=""
KUBE=()
# Per-pod findings (parse_pods), one entry per pod in each list.
NUDGE_PODS=() NUDGE_WHY=() UNCHANGED_PODS=() HELP_PODS=() HELP_WHY=() HELP_OWNER=()
SKIPPED_LINES=()
# The first refusal of the API (a message for the error line), or a lost cluster.
REFUSAL="" LOST="" NUDGED=0 GONE=0
# ReplicaSet -> "Deployment NAME", "" (it has none) or "?" (it could not be read); each is
# read once, and after one refusal none is.
declare -A RS_OWNER=()
RS_REFUSED=false CURE=""
# The pod parse_pods is reading.
P_NAME="" P_PHASE="" P_STATE="" P_IGNORE="" P_VALUE="" P_OWNER="" P_OWNER_IS_CONTROLLER=false
P_PROJECTED=" " P_VOLUMES=() P_MOUNTED=() P_USES=() P_CANNOT=()

# usage — the header comment, up to `set -o`, without its "# ".
usage() {
  local line
  while IFS= read -r line; do
    [[ "${line}" != "set -o"* ]] || break
    [[ "${line}" != "#!"* ]] || continue
    line=${line#\#}
    printf '%s\n' "${line# }"
  done <"$0"
}
# first_line FILE PREFIX [TEXT] — the first line of FILE that starts with PREFIX (and holds
# TEXT); status 1 when there is none. Bash, not grep: the script needs nothing but bash,
# coreutils and kubectl.
first_line() {
  local line
  while IFS= read -r line || [[ -n "${line}" ]]; do
    if [[ "${line}" == "$2"* && "${line}" == *"${3:-}"* ]]; then
      printf '%s\n' "${line}"
      return 0
    fi
  done <"$1"
  return 1
}
# has_line FILE LINE — FILE holds LINE, whole.
has_line() {
  local line
  while IFS= read -r line || [[ -n "${line}" ]]; do
    [[ "${line}" != "$2" ]] || return 0
  done <"$1"
  return 1
}
error() { printf '%s: error: %s\n' "${PROG}" "$*" >&2; }
die() { local code=$1; shift; error "$@"; exit "${code}"; }
usage_error() { error "$@"; printf "Try '%s --help'.\n" "$0" >&2; exit 2; }
cleanup() { [[ -z "${TMP}" || ! -d "${TMP}" ]] || rm -rf -- "${TMP}"; }

parse_args() {
  while (($#)); do
    case "$1" in
      -h | --help) usage; exit 0 ;;
      -n | --namespace | --context)
        if (($# < 2)) || [[ -z "$2" ]]; then usage_error "$1 needs a value"; fi
        if [[ "$1" == --context ]]; then CONTEXT=$2; else NS=$2; fi
        shift
        ;;
      --namespace=*) NS=${1#*=}; [[ -n "${NS}" ]] || usage_error "--namespace needs a value" ;;
      --context=*) CONTEXT=${1#*=}; [[ -n "${CONTEXT}" ]] || usage_error "--context needs a value" ;;
      --dry-run) DRY_RUN=true ;;
      --) shift; break ;;
      -*) usage_error "unknown option $1" ;;
      *)
        [[ -z "${TARGET}" ]] || usage_error "one object at a time (got '${TARGET}' and '$1')"
        TARGET=$1
        ;;
    esac
    shift
  done
  if (($#)); then
    [[ -z "${TARGET}" && $# -eq 1 ]] || usage_error "one object at a time"
    TARGET=$1
  fi
  [[ -n "${TARGET}" ]] || usage_error "which Secret or ConfigMap? (the first argument)"
  NAME=${TARGET#*/}
  case "${TARGET%%/*}" in
    "${TARGET}" | secret | secrets) ;;
    configmap | configmaps | cm) KIND=ConfigMap RES=configmap FIELD=configMap ;;
    *) usage_error "'${TARGET}' is neither a Secret (NAME, secret/NAME) nor a ConfigMap (configmap/NAME)" ;;
  esac
  # A Secret's or ConfigMap's name is a DNS subdomain; checking it also keeps it out of
  # harm's way in the patch and the messages.
  if ((${#NAME} > 253)) || ! [[ "${NAME}" =~ ^${DNS_LABEL}(\.${DNS_LABEL})*$ ]]; then
    usage_error "'${NAME}' is not a ${KIND} name (a DNS subdomain: a-z, 0-9, '-', '.')"
  fi
  if [[ -n "${NS}" ]] && { ((${#NS} > 63)) || ! [[ "${NS}" =~ ^${DNS_LABEL}$ ]]; }; then
    usage_error "'${NS}' is not a namespace name (a DNS label: a-z, 0-9, '-')"
  fi
  REQUEST_TIMEOUT=${NUDGE_REQUEST_TIMEOUT:-10}
  [[ "${REQUEST_TIMEOUT}" =~ ^[1-9][0-9]*$ ]] ||
    usage_error "NUDGE_REQUEST_TIMEOUT must be a whole number of seconds, not '${REQUEST_TIMEOUT}'"
}

# annotation_key NAME — our annotation key for that Secret or ConfigMap: the prefix, then
# the name itself when it fits the 63 characters of a key's name part, else its first 52
# characters, "-" and 10 hex digits of its sha256 (a name starts with [a-z0-9] and the hash
# ends with one, as a name part must; in between '-' and '.' are allowed).
annotation_key() {
  local name=$1 hash
  if ((${#name} > NAME_MAX)); then
    hash=$(printf '%s' "${name}" | sha256sum | cut -c "1-${HASH_LEN}")
    name="${name:0:$((NAME_MAX - HASH_LEN - 1))}-${hash}"
  fi
  printf '%s.%s/%s\n' "${RES}" "${KEY_DOMAIN}" "${name}"
}

# kube ARG... — kubectl as KUBECTL says, with --context, every request bounded by
# --request-timeout and the whole call by timeout(1); stdin from /dev/null, stderr into
# ${TMP}/err (read by the callers).
kube() {
  timeout -k 2 $((REQUEST_TIMEOUT * 4 + 5)) "${KUBE[@]}" "$@" </dev/null 2>"${TMP}/err"
}

# last_error — kubectl's last non-empty line of stderr, or what timeout(1) did.
last_error() {
  local line last=""
  while IFS= read -r line || [[ -n "${line}" ]]; do
    [[ "${line}" =~ ^[[:space:]]*$ ]] || last=${line}
  done <"${TMP}/err"
  if [[ -n "${last}" ]]; then
    printf '%s\n' "${last:0:300}"
  else
    printf 'no answer within %ss\n' "$((REQUEST_TIMEOUT * 4 + 5))"
  fi
}

# refusal VERB WHAT LINE — notes the API's refusal LINE ("Error from server (Reason): ...")
# of VERB on WHAT (resource/name) unless one is noted already; the verb the server names
# wins (`kubectl patch` GETs each pod first: its refusal may be a `get`).
refusal() {
  local verb=$1 what=$2 line=$3 reason=error where="namespace ${NS}"
  [[ -z "${REFUSAL}" ]] || return 0
  [[ -n "${NS}" ]] || where="the context's namespace"
  if [[ -z "${NS}" && "${line}" =~ in\ the\ namespace\ \"([^\"]+)\" ]]; then
    where="namespace ${BASH_REMATCH[1]}"
  fi
  [[ ! "${line}" =~ Error\ from\ server\ \(([A-Za-z]+)\) ]] || reason=${BASH_REMATCH[1]}
  [[ ! "${line}" =~ cannot\ ([a-z]+)\ resource\ \" ]] || verb=${BASH_REMATCH[1]}
  REFUSAL="the API refused to ${verb} ${what} in ${where} (${reason})"
}

# answered LINE — true when LINE is an answer of the API server (not a lost connection).
answered() { [[ "$1" == *"Error from server ("* ]]; }

# read_object — sets RV and NS (kubectl's default namespace when -n was not given) from the
# Secret or ConfigMap; exits 1 when it or its namespace is not found or it is refused, 2
# when no cluster answers.
read_object() {
  local -a ns_flag=()
  [[ -z "${NS}" ]] || ns_flag=(-n "${NS}")
  if ! kube get "${RES}" "${NAME}" "${ns_flag[@]}" \
    -o 'go-template={{.metadata.namespace}} {{.metadata.resourceVersion}}' >"${TMP}/object"; then
    local line where="the context's namespace"
    line=$(last_error)
    if ! answered "${line}"; then
      die 2 "no cluster reachable with '${KUBECTL:-kubectl}${CONTEXT:+ --context ${CONTEXT}}': ${line}"
    fi
    [[ -z "${NS}" ]] || where="namespace ${NS}"
    # After a 404 kubectl reads the namespace, and says when that is what is missing (when
    # it may read it: else it reports the 404 it had).
    if [[ "${line}" =~ \(NotFound\):\ namespaces\ \"([^\"]+)\"\ not\ found ]]; then
      [[ -z "${NS}" ]] || die 1 "namespace ${NS} not found"
      die 1 "namespace ${BASH_REMATCH[1]} not found (the context's namespace)"
    fi
    [[ "${line}" != *"(NotFound)"* ]] || die 1 "${KIND} ${NAME} not found in ${where}"
    refusal get "${RES}s/${NAME}" "${line}"
    die 1 "${REFUSAL}"
  fi
  local ns rv
  read -r ns rv <"${TMP}/object" || true
  NS=${NS:-${ns}}
  # A resourceVersion is opaque, but always a plain token: keep it one in the patch.
  [[ "${rv}" =~ ^[A-Za-z0-9._:-]+$ ]] ||
    die 1 "${KIND} ${NAME} in namespace ${NS} has an unexpected resourceVersion '${rv}'"
  RV=${rv}
}

# pods_template — a go-template printing, for each pod, the lines parse_pods reads (FIELD:
# secret or configMap, the kind of object to nudge; the others are not asked for):
#   P NAME PHASE terminating|- ignore|- VALUE-OF-OUR-ANNOTATION     (ignore: opted out)
#   O OWNER-KIND OWNER-NAME controller|-
#   V VOLUME FIELD|projected OBJECT-NAME
#   M init|container|ephemeral CONTAINER VOLUME subPath|-
#   E init|container|ephemeral CONTAINER OBJECT-NAME VARIABLE   (env FIELDKeyRef)
#   F init|container|ephemeral CONTAINER OBJECT-NAME            (envFrom FIELDRef)
# Only fields of the Kubernetes 1.15 API, and ephemeralContainers (1.16 on; a range over a
# missing field prints nothing); `if` on a missing field is false, so optional fields are
# tested before they are printed or indexed.
pods_template() {
  local nl='{{"\n"}}' containers="" field kind name=name
  [[ "${FIELD}" != secret ]] || name=secretName # a Secret volume's name field
  for field in initContainers:init containers:container ephemeralContainers:ephemeral; do
    kind=${field#*:}
    field=${field%%:*}
    containers+="{{range .spec.${field}}}{{\$c := .name}}"
    containers+="{{range .volumeMounts}}M ${kind} {{\$c}} {{.name}} "
    containers+="{{if .subPath}}subPath{{else if .subPathExpr}}subPath{{else}}-{{end}}${nl}{{end}}"
    containers+="{{range .env}}{{\$e := .name}}{{with .valueFrom}}{{with .${FIELD}KeyRef}}"
    containers+="E ${kind} {{\$c}} {{.name}} {{\$e}}${nl}{{end}}{{end}}{{end}}"
    containers+="{{range .envFrom}}{{with .${FIELD}Ref}}F ${kind} {{\$c}} {{.name}}${nl}{{end}}{{end}}"
    containers+="{{end}}"
  done
  printf '%s' "{{range .items}}" \
    "P {{.metadata.name}} {{with .status.phase}}{{.}}{{else}}Unknown{{end}} " \
    "{{if .metadata.deletionTimestamp}}terminating{{else}}-{{end}} " \
    "{{with .metadata.annotations}}{{with index . \"${IGNORE}\"}}{{if eq . \"true\"}}ignore{{else}}-{{end}}" \
    "{{else}}-{{end}}{{else}}-{{end}} " \
    "{{with .metadata.annotations}}{{with index . \"${KEY}\"}}{{.}}{{end}}{{end}}${nl}" \
    "{{range .metadata.ownerReferences}}O {{.kind}} {{.name}} " \
    "{{if .controller}}controller{{else}}-{{end}}${nl}{{end}}" \
    "{{range .spec.volumes}}{{\$v := .name}}" \
    "{{with .${FIELD}}}V {{\$v}} ${FIELD} {{.${name}}}${nl}{{end}}" \
    "{{with .projected}}{{range .sources}}{{with .${FIELD}}}V {{\$v}} projected {{.name}}${nl}" \
    "{{end}}{{end}}{{end}}{{end}}" \
    "${containers}" \
    "{{end}}"
}

# in_container KIND NAME — "container app", "init container setup", ...
in_container() {
  case "$1" in init | ephemeral) printf '%s container %s' "$1" "$2" ;; *) printf 'container %s' "$2" ;; esac
}

# join SEP ITEM... — the items, separated by SEP.
join() {
  local sep=$1 out=$2
  shift 2
  local item
  for item in "$@"; do out+="${sep}${item}"; done
  printf '%s' "${out}"
}

# classify_pod — files the pod just read under what is to be done with it.
classify_pod() {
  [[ -n "${P_NAME}" ]] || return 0
  local unmounted=() vol
  for vol in "${P_VOLUMES[@]}"; do
    [[ " ${P_MOUNTED[*]} " == *" ${vol} "* ]] || unmounted+=("${vol}")
  done
  if ((${#P_VOLUMES[@]} == 0 && ${#P_CANNOT[@]} == 0)); then
    return 0 # not a consumer of this object
  fi
  local not_running=""
  case "${P_IGNORE}/${P_STATE}/${P_PHASE}" in
    ignore/*) not_running="opted out (${IGNORE}: \"true\")" ;;
    */terminating/*) not_running="terminating" ;;
    */Pending) not_running="Pending, not started: it reads the ${KIND} as it is when it starts" ;;
    */Running) ;;
    *) not_running="${P_PHASE}, not running" ;;
  esac
  if [[ -n "${not_running}" ]]; then
    SKIPPED_LINES+=("skipped pod/${P_NAME}: ${not_running}")
    return 0
  fi
  if ((${#P_USES[@]})); then
    if [[ "${P_VALUE}" == "${RV}" ]]; then
      UNCHANGED_PODS+=("${P_NAME}")
    else
      NUDGE_PODS+=("${P_NAME}")
      NUDGE_WHY+=("$(join ', ' "${P_USES[@]}")")
    fi
  fi
  if ((${#P_CANNOT[@]})); then
    HELP_PODS+=("${P_NAME}")
    HELP_WHY+=("$(join ', ' "${P_CANNOT[@]}")")
    HELP_OWNER+=("${P_OWNER}")
  fi
  if ((${#P_USES[@]} == 0 && ${#P_CANNOT[@]} == 0)); then
    SKIPPED_LINES+=("skipped pod/${P_NAME}: no container mounts volume $(join ', ' "${unmounted[@]}"), which holds the ${KIND}")
  fi
}

# parse_pods FILE — reads the pods_template output in FILE (see there).
parse_pods() {
  local tag a b c d e projected
  while read -r tag a b c d e; do
    case "${tag}" in
      P)
        classify_pod
        P_NAME=${a} P_PHASE=${b} P_STATE=${c} P_IGNORE=${d} P_VALUE=${e}
        P_OWNER="" P_OWNER_IS_CONTROLLER=false P_PROJECTED=" "
        P_VOLUMES=() P_MOUNTED=() P_USES=() P_CANNOT=()
        ;;
      O)
        # The controller, else the first owner named.
        if [[ "${c}" == controller && "${P_OWNER_IS_CONTROLLER}" == false ]]; then
          P_OWNER="${a} ${b}" P_OWNER_IS_CONTROLLER=true
        elif [[ -z "${P_OWNER}" ]]; then
          P_OWNER="${a} ${b}"
        fi
        ;;
      V)
        if [[ "${c}" == "${NAME}" ]]; then
          P_VOLUMES+=("${a}")
          [[ "${b}" != projected ]] || P_PROJECTED+="${a} "
        fi
        ;;
      M)
        [[ " ${P_VOLUMES[*]} " == *" ${c} "* ]] || continue
        if [[ "${d}" == subPath ]]; then
          P_CANNOT+=("subPath mount of volume ${c} in $(in_container "${a}" "${b}")")
        else
          P_MOUNTED+=("${c}")
          projected=""
          [[ "${P_PROJECTED}" != *" ${c} "* ]] || projected="projected "
          P_USES+=("${projected}volume ${c} in $(in_container "${a}" "${b}")")
        fi
        ;;
      E) [[ "${c}" != "${NAME}" ]] || P_CANNOT+=("env ${d} in $(in_container "${a}" "${b}")") ;;
      F) [[ "${c}" != "${NAME}" ]] || P_CANNOT+=("envFrom in $(in_container "${a}" "${b}")") ;;
      *) ;; # a line of an annotation value of ours that holds a newline: not ours to read
    esac
  done <"$1"
  classify_pod
}

# list_pods — every pod of the namespace, through pods_template, into parse_pods.
list_pods() {
  if ! kube get pods -n "${NS}" -o "go-template=$(pods_template)" >"${TMP}/pods"; then
    local line
    line=$(last_error)
    answered "${line}" || die 2 "lost the cluster while listing pods in namespace ${NS}: ${line}"
    refusal list pods "${line}"
    die 1 "${REFUSAL}"
  fi
  parse_pods "${TMP}/pods"
}

# nudge_pods — annotates every pod in NUDGE_PODS in one kubectl call (kubectl patches them
# one after the other and goes on after an error) and prints a line for each.
nudge_pods() {
  ((${#NUDGE_PODS[@]})) || return 0
  local i pod
  if [[ "${DRY_RUN}" == true ]]; then
    for i in "${!NUDGE_PODS[@]}"; do
      printf 'would-nudge pod/%s %s=%s (%s)\n' "${NUDGE_PODS[i]}" "${KEY}" "${RV}" "${NUDGE_WHY[i]}"
      NUDGED=$((NUDGED + 1))
    done
    return 0
  fi
  local patch
  patch=$(printf '{"metadata":{"annotations":{"%s":"%s"}}}' "${KEY}" "${RV}")
  kube patch pods "${NUDGE_PODS[@]}" -n "${NS}" --type merge -p "${patch}" -o name >"${TMP}/patched" || true
  local line
  for i in "${!NUDGE_PODS[@]}"; do
    pod=${NUDGE_PODS[i]}
    if has_line "${TMP}/patched" "pod/${pod}"; then
      printf 'nudged pod/%s %s=%s (%s)\n' "${pod}" "${KEY}" "${RV}" "${NUDGE_WHY[i]}"
      NUDGED=$((NUDGED + 1))
      continue
    fi
    line=$(first_line "${TMP}/err" "" "pods \"${pod}\"") || true
    if [[ "${line}" == *"(NotFound)"* ]]; then
      printf 'gone pod/%s: deleted since it was listed\n' "${pod}"
      GONE=$((GONE + 1))
    elif answered "${line}"; then
      refusal patch "pods/${pod}" "${line}"
    else
      [[ -n "${LOST}" ]] || LOST="no answer while patching pods/${pod} in namespace ${NS}: $(last_error)"
    fi
  done
}

# deployment_of REPLICASET — fills RS_OWNER[REPLICASET] (see there); a refusal is noted.
deployment_of() {
  local rs=$1 line
  if [[ -z "${RS_OWNER[${rs}]+set}" ]]; then
    RS_OWNER[${rs}]="?"
    [[ "${RS_REFUSED}" == false ]] || return 0
    if kube get replicasets.apps "${rs}" -n "${NS}" -o 'go-template={{range .metadata.ownerReferences}}{{if .controller}}{{.kind}} {{.name}}{{"\n"}}{{end}}{{end}}' >"${TMP}/rs"; then
      RS_OWNER[${rs}]=$(first_line "${TMP}/rs" "Deployment ") || RS_OWNER[${rs}]=""
    else
      line=$(last_error)
      if [[ "${line}" == *"(NotFound)"* ]]; then
        : # gone meanwhile: the ReplicaSet is named instead
      elif answered "${line}"; then
        RS_REFUSED=true
        refusal get "replicasets.apps/${rs}" "${line}"
      else
        RS_REFUSED=true
        [[ -n "${LOST}" ]] || LOST="no answer while reading replicasets.apps/${rs} in namespace ${NS}: ${line}"
      fi
    fi
  fi
}

# owner_cure "KIND NAME" POD — sets CURE for a pod with that controller (or first owner):
# `kubectl rollout restart` of its Deployment (read from its ReplicaSet), StatefulSet or
# DaemonSet; else what to restart, by name.
owner_cure() {
  local kind=${1%% *} name=${1#* } pod=$2 how=""
  if [[ -z "$1" ]]; then
    CURE="delete and re-create pod/${pod} (it has no owner)"
    return 0
  fi
  if [[ "${kind}" == ReplicaSet ]]; then
    deployment_of "${name}"
    case "${RS_OWNER[${name}]}" in
      "?") how="its Deployment, if any, could not be read" ;;
      "") how="it belongs to no Deployment" ;;
      *) kind=Deployment name=${RS_OWNER[${name}]#* } ;;
    esac
  fi
  case "${kind}" in
    Deployment | StatefulSet | DaemonSet) CURE="kubectl rollout restart ${kind,,}/${name} -n ${NS}" ;;
    ReplicaSet) CURE="re-create the pods of replicaset/${name} one at a time (${how}; kubectl rollout restart takes no ReplicaSet)" ;;
    *) CURE="restart its owner ${kind,,}/${name}" ;;
  esac
}

# report — the lines of the pods not nudged, the sentence and the summary line.
report() {
  local pod i
  for pod in "${UNCHANGED_PODS[@]}"; do
    printf 'unchanged pod/%s: already has %s=%s\n' "${pod}" "${KEY}" "${RV}"
  done
  for i in "${!HELP_PODS[@]}"; do
    owner_cure "${HELP_OWNER[i]}" "${HELP_PODS[i]}"
    printf 'cannot-help pod/%s: %s; cure: %s\n' "${HELP_PODS[i]}" "${HELP_WHY[i]}" "${CURE}"
  done
  ((${#SKIPPED_LINES[@]} == 0)) || printf '%s\n' "${SKIPPED_LINES[@]}"
  local skipped=$((${#SKIPPED_LINES[@]} + GONE)) unchanged=${#UNCHANGED_PODS[@]} helpless=${#HELP_PODS[@]}
  local -a said=()
  if [[ "${DRY_RUN}" == true && NUDGED -gt 0 ]]; then
    said+=("dry run: would nudge ${NUDGED} pod(s), patched nothing")
  elif ((NUDGED > 0)); then
    said+=("nudged ${NUDGED} pod(s): the kubelet rewrites their copies of ${KIND} ${NAME} now")
  elif ((unchanged > 0)); then
    said+=("nothing changed: the pods that mount ${KIND} ${NAME} already have its resourceVersion ${RV}")
  else
    said+=("nothing to nudge: no running pod in namespace ${NS} mounts ${KIND} ${NAME} as a volume")
  fi
  if ((unchanged > 0 && NUDGED > 0)); then
    said+=("${unchanged} already up to date")
  fi
  if ((helpless > 0)); then
    said+=("${helpless} pod(s) keep the old value until restarted (cannot-help above)")
  fi
  printf '%s\n' "$(join '; ' "${said[@]}")"
  printf 'NUDGE %s=%s nudged=%d unchanged=%d cannot_help=%d skipped=%d namespace=%s resource_version=%s dry_run=%s\n' \
    "${RES}" "${NAME}" "${NUDGED}" "${unchanged}" "${helpless}" "${skipped}" "${NS}" "${RV}" "${DRY_RUN}"
}

main() {
  parse_args "$@"
  read -r -a KUBE <<<"${KUBECTL:-kubectl}"
  ((${#KUBE[@]})) || KUBE=(kubectl)
  command -v "${KUBE[0]}" >/dev/null 2>&1 ||
    die 2 "no cluster: '${KUBE[0]}' (KUBECTL) is not on PATH"
  KUBE+=("--request-timeout=${REQUEST_TIMEOUT}s")
  [[ -z "${CONTEXT}" ]] || KUBE+=(--context "${CONTEXT}")
  TMP=$(mktemp -d)
  trap cleanup EXIT
  KEY=$(annotation_key "${NAME}")

  read_object
  list_pods
  nudge_pods
  report
  [[ -z "${LOST}" ]] || die 2 "${LOST}"
  [[ -z "${REFUSAL}" ]] || die 1 "${REFUSAL}"
}

main "$@"
