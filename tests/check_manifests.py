"""Assertions on the rendered kustomize overlays of k8s/ (run by tests/manifests.sh).

    check_manifests.py check RENDER_DIR K8S_DIR
        RENDER_DIR holds one `kubectl kustomize` output per overlay (<overlay>.yaml) and
        wrapped-secret-generator.yaml (the secret-generator overlay wrapped by a
        kustomization that changes the Secret value and overrides the image), for
        k8s/nudge-rbac nudge-rbac.yaml and wrapped-nudge-rbac.yaml (in namespace shop,
        through a wrapping kustomization), and for the nudger nudger.yaml,
        nudger-cluster.yaml (k8s/nudger, k8s/nudger/cluster) and wrapped-nudger.yaml,
        wrapped-nudger-cluster.yaml (each in namespace shop, with the component
        k8s/nudger/restart and image example.invalid/hello-path-nudger:override). Prints one
        `PASS <check>` or `FAIL <check>: <why>` line per check; exits 1 if any failed.

    check_manifests.py as-1.15 FILE
        Prints FILE as a Kubernetes 1.15 API server keeps it: without the fields newer than
        1.15 that the manifests use on purpose (POST_1_15_FIELDS), so that the rest can be
        validated strictly against the 1.15 schema.

Needs PyYAML (installed with kubernetes-validate in the test virtualenv).
"""

import base64
import itertools
import json
import os
import re
import sys

import yaml

NAMESPACE = "hello-path"
NAME = "hello-path"
SECRET = "hello-path-secret"
SECRET_KEY = "mysecret"
IMAGE = "localhost/hello-path-rs:0.1.0"
UID = 65532
SECRET_DIR = "/etc/hello-path"
OVERLAYS = [
    "no-arg", "arg", "env", "env-reload", "volume-reload", "rotate", "subpath",
    "reloader", "secret-generator",
]
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
METADATA_ONLY_LABELS = {
    "app.kubernetes.io/part-of", "app.kubernetes.io/version",
    "app.kubernetes.io/component", "app.kubernetes.io/managed-by",
}
RELOADER_ANNOTATION = "secret.reloader.stakater.com/reload"
SECCOMP_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
# Fields newer than Kubernetes 1.15 used on purpose: a 1.15 API server drops them, and the
# seccomp annotation above carries the same setting there.
POST_1_15_FIELDS = {"seccompProfile"}

# The binary's flags (SPEC §2, src/config.rs): value flags and Go-style booleans.
VALUE_FLAGS = {
    "listen-addr", "mysecret", "mysecret-file", "retry-interval", "watch-interval",
    "shutdown-delay", "expected-secret",
}
BOOL_FLAGS = {"reload", "log-requests", "expose-secret"}


class Report:
    """Counts and prints one line per check."""

    def __init__(self):
        self.failed = 0

    def check(self, name, problems):
        """Records a check; `problems` is a list of strings, empty when it passed."""
        problems = [p for p in problems if p]
        if problems:
            self.failed += 1
            print(f"FAIL {name}: {'; '.join(problems)}")
        else:
            print(f"PASS {name}")


def parse_duration(text):
    """Seconds in `250ms`, `10s`, `1m`, `1m30s`, `1h` or bare seconds; ValueError otherwise."""
    if re.fullmatch(r"\d+", text):
        return float(text)
    parts = re.findall(r"(\d+)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * scale[u] for n, u in parts)


def parse_args(args):
    """Parses container args the way the binary does: returns (flags, errors)."""
    flags, errors, i = {}, [], 0
    while i < len(args):
        token = str(args[i])
        i += 1
        match = re.fullmatch(r"--?([a-z][a-z-]*)(?:=(.*))?", token)
        if not match:
            errors.append(f"unexpected argument {token!r}")
            continue
        name, value = match.group(1), match.group(2)
        if name in BOOL_FLAGS:
            if value is None:
                value = True
            elif value in ("true", "false"):
                value = value == "true"
            else:
                errors.append(f"--{name} takes =true or =false, not {value!r}")
        elif name in VALUE_FLAGS:
            if value is None:
                if i >= len(args):
                    errors.append(f"--{name} needs a value")
                    continue
                value = str(args[i])
                i += 1
        else:
            errors.append(f"unknown flag --{name}")
            continue
        if name in flags:
            errors.append(f"--{name} given twice")
        flags[name] = value
    if "mysecret" in flags and "mysecret-file" in flags:
        errors.append("--mysecret and --mysecret-file together")
    for name in ("retry-interval", "watch-interval", "shutdown-delay"):
        if name in flags:
            try:
                parse_duration(flags[name])
            except ValueError as err:
                errors.append(f"--{name}: {err}")
    return flags, errors


def secret_value(secret):
    """The decoded value of key `mysecret`, or None."""
    if SECRET_KEY in (secret.get("stringData") or {}):
        return str(secret["stringData"][SECRET_KEY])
    data = (secret.get("data") or {}).get(SECRET_KEY)
    return None if data is None else base64.b64decode(data).decode()


class Rendered:
    """One rendered overlay, with the pieces the checks look at."""

    def __init__(self, overlay, path):
        self.overlay = overlay
        with open(path, encoding="utf-8") as f:
            self.docs = [d for d in yaml.safe_load_all(f) if d]
        self.by_kind = {}
        for doc in self.docs:
            self.by_kind.setdefault(doc.get("kind"), []).append(doc)
        self.deployment = self.one("Deployment")
        self.service = self.one("Service")
        self.namespace = self.one("Namespace")
        self.secrets = self.by_kind.get("Secret", [])
        spec = self.deployment.get("spec", {})
        self.template = spec.get("template", {})
        self.pod = self.template.get("spec", {})
        containers = self.pod.get("containers") or [{}]
        self.container = containers[0]
        self.flags, self.arg_errors = parse_args(self.container.get("args") or [])
        self.env = {e.get("name"): e for e in self.container.get("env") or []}
        self.volumes = {v.get("name"): v for v in self.pod.get("volumes") or []}
        self.mounts = self.container.get("volumeMounts") or []

    def one(self, kind):
        docs = self.by_kind.get(kind, [])
        return docs[0] if len(docs) == 1 else {}

    def secret(self, name):
        for secret in self.secrets:
            if secret["metadata"]["name"] == name:
                return secret
        return None

    def env_secret_ref(self):
        """The secretKeyRef of env MYSECRET, or None."""
        entry = self.env.get("MYSECRET") or {}
        return (entry.get("valueFrom") or {}).get("secretKeyRef")

    def secret_mounts(self):
        """[(mount, secretName)] for every mounted Secret volume."""
        out = []
        for mount in self.mounts:
            volume = self.volumes.get(mount.get("name"), {})
            if "secret" in volume:
                out.append((mount, volume["secret"].get("secretName")))
        return out

    def reload(self):
        return self.flags.get("reload") is True


def common_checks(report, r):
    """Checks every overlay must pass."""
    o, dep, pod, c = r.overlay, r.deployment, r.pod, r.container
    meta = dep.get("metadata", {})
    spec = dep.get("spec", {})

    kinds = sorted((d.get("kind"), d["metadata"].get("name")) for d in r.docs)
    problems = []
    for kind in ("Namespace", "Deployment", "Service", "Secret"):
        if len(r.by_kind.get(kind, [])) != 1:
            problems.append(f"expected one {kind}, got {len(r.by_kind.get(kind, []))}")
    if len(r.docs) != 4:
        problems.append(f"expected 4 objects, got {kinds}")
    if r.namespace.get("metadata", {}).get("name") != NAMESPACE:
        problems.append(f"namespace is not {NAMESPACE}")
    for doc in r.docs:
        if doc.get("kind") != "Namespace" and doc["metadata"].get("namespace") != NAMESPACE:
            problems.append(f"{doc['kind']} not in namespace {NAMESPACE}")
    if meta.get("name") != NAME or r.service.get("metadata", {}).get("name") != NAME:
        problems.append(f"Deployment and Service must be named {NAME}")
    report.check(f"{o}: objects (Namespace, Deployment, Service, Secret in {NAMESPACE})", problems)

    labels = r.namespace.get("metadata", {}).get("labels") or {}
    report.check(f"{o}: namespace enforces restricted Pod Security (+ audit, warn)", [
        f"pod-security.kubernetes.io/{mode} is {labels.get(f'pod-security.kubernetes.io/{mode}')!r}"
        for mode in ("enforce", "audit", "warn")
        if labels.get(f"pod-security.kubernetes.io/{mode}") != "restricted"
    ])

    want = {"app.kubernetes.io/name": "hello-path-rs", "app.kubernetes.io/instance": o}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    svc_selector = (r.service.get("spec") or {}).get("selector") or {}
    template_labels = (r.template.get("metadata") or {}).get("labels") or {}
    problems = []
    if selector != want:
        problems.append(f"Deployment selector {selector} != {want}")
    if (spec.get("selector") or {}).get("matchExpressions"):
        problems.append("Deployment selector has matchExpressions")
    if svc_selector != want:
        problems.append(f"Service selector {svc_selector} != {want}")
    if any(template_labels.get(k) != v for k, v in want.items()):
        problems.append("pod template labels lack the selector labels")
    for doc in r.docs:
        doc_labels = doc["metadata"].get("labels") or {}
        if any(doc_labels.get(k) != v for k, v in want.items()):
            problems.append(f"{doc['kind']} lacks name/instance labels")
    missing = METADATA_ONLY_LABELS - set(meta.get("labels") or {})
    if missing:
        problems.append(f"Deployment metadata lacks {sorted(missing)}")
    missing = METADATA_ONLY_LABELS - set(template_labels)
    if missing:
        problems.append(f"pod template lacks {sorted(missing)}")
    if (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != "kustomize":
        problems.append("managed-by is not kustomize")
    report.check(f"{o}: selectors are exactly name + instance, other labels in metadata", problems)

    psc = pod.get("securityContext") or {}
    csc = c.get("securityContext") or {}
    caps = csc.get("capabilities") or {}
    annotations = (r.template.get("metadata") or {}).get("annotations") or {}
    problems = []
    if psc.get("runAsNonRoot") is not True:
        problems.append("pod runAsNonRoot is not true")
    if psc.get("runAsUser") != UID or psc.get("runAsGroup") != UID:
        problems.append(f"pod runAsUser/runAsGroup are not {UID}")
    for where, sc in (("pod", psc), ("container", csc)):
        if "seccompProfile" in sc and sc["seccompProfile"].get("type") != "RuntimeDefault":
            problems.append(f"{where} seccompProfile is not RuntimeDefault")
        if "runAsUser" in sc and sc["runAsUser"] != UID:
            problems.append(f"{where} runAsUser is not {UID}")
    if (psc.get("seccompProfile") or csc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("no seccompProfile RuntimeDefault")
    if annotations.get(SECCOMP_ANNOTATION) != "runtime/default":
        problems.append(f"no {SECCOMP_ANNOTATION}: runtime/default annotation (Kubernetes < 1.19)")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if caps.get("drop") != ["ALL"] or caps.get("add"):
        problems.append("capabilities are not drop [ALL] without add")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if csc.get("privileged") or csc.get("runAsNonRoot") is False:
        problems.append("container overrides privileged/runAsNonRoot")
    if any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        problems.append("uses host namespaces")
    if any("hostPath" in v for v in r.volumes.values()):
        problems.append("uses a hostPath volume")
    report.check(f"{o}: restricted security context (non-root {UID}, seccomp, no caps, ro rootfs)",
                 problems)

    report.check(f"{o}: no service account token mounted", [
        "automountServiceAccountToken is not false"
        if pod.get("automountServiceAccountToken") is not False else ""])

    ports = c.get("ports") or []
    problems = []
    if len(pod.get("containers") or []) != 1 or pod.get("initContainers"):
        problems.append("expected exactly one container and no init container")
    if c.get("name") != NAME:
        problems.append(f"container is not named {NAME}")
    if c.get("image") != IMAGE:
        problems.append(f"image is {c.get('image')!r}, not {IMAGE}")
    if c.get("imagePullPolicy") != "IfNotPresent":
        problems.append("imagePullPolicy is not IfNotPresent")
    if not any(p.get("name") == "http" and p.get("containerPort") == 8080 for p in ports):
        problems.append("no container port http 8080")
    report.check(f"{o}: container {NAME}, image {IMAGE}, IfNotPresent, port http", problems)

    svc_ports = (r.service.get("spec") or {}).get("ports") or []
    report.check(f"{o}: Service port 80 -> http", [
        "" if any(p.get("port") == 80 and p.get("targetPort") == "http" and p.get("name") == "http"
                  for p in svc_ports) else f"ports are {svc_ports}"])

    probe = c.get("readinessProbe") or {}
    get = probe.get("httpGet") or {}
    problems = []
    if get.get("path") != "/readyz" or get.get("port") != "http":
        problems.append(f"readinessProbe httpGet is {get}, not /readyz on port http")
    if not 1 <= probe.get("periodSeconds", 10) <= 2:
        problems.append(f"periodSeconds {probe.get('periodSeconds', 10)} not in 1-2")
    if probe.get("failureThreshold", 3) > 3:
        problems.append(f"failureThreshold {probe.get('failureThreshold')} > 3")
    report.check(f"{o}: readinessProbe GET /readyz on port http, fast", problems)

    report.check(f"{o}: no liveness or startup probe (a pod waiting for its credential lives)", [
        f"has a {p}" for p in ("livenessProbe", "startupProbe") if p in c])

    resources = c.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    report.check(f"{o}: cpu + memory requests and a memory limit", [
        "" if "cpu" in requests else "no cpu request",
        "" if "memory" in requests else "no memory request",
        "" if "memory" in limits else "no memory limit",
    ])

    strategy = spec.get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    replicas = 1 if o == "no-arg" else 2
    report.check(f"{o}: rolling update maxUnavailable 0, maxSurge 1, minReadySeconds, replicas {replicas}", [
        "" if strategy.get("type") == "RollingUpdate" else "strategy is not RollingUpdate",
        "" if rolling.get("maxUnavailable") in (0, "0%") else "maxUnavailable is not 0",
        "" if rolling.get("maxSurge") == 1 else "maxSurge is not 1",
        "" if spec.get("minReadySeconds", 0) > 0 else "minReadySeconds is not > 0",
        "" if 0 < spec.get("progressDeadlineSeconds", 600) <= 300 else "progressDeadlineSeconds not in 1-300",
        "" if spec.get("replicas") == replicas else f"replicas is {spec.get('replicas')}",
    ])

    report.check(f"{o}: args are valid hello-path-rs flags {c.get('args') or []}", r.arg_errors)

    grace = pod.get("terminationGracePeriodSeconds", 30)
    try:
        delay = parse_duration(str(r.flags.get("shutdown-delay", "0s")))
    except ValueError:
        delay = float("inf")
    problems = [] if grace > delay else [f"terminationGracePeriodSeconds {grace} <= --shutdown-delay {delay}s"]
    if o != "no-arg" and delay <= 0:
        problems.append("no --shutdown-delay to drain before exit")
    report.check(f"{o}: terminationGracePeriodSeconds ({grace}) > --shutdown-delay ({delay:g}s)", problems)

    problems = []
    for secret in r.secrets:
        if secret.get("type", "Opaque") != "Opaque" or secret_value(secret) is None:
            problems.append(f"Secret {secret['metadata']['name']} is not Opaque with key {SECRET_KEY}")
    refs = [m[1] for m in r.secret_mounts()]
    ref = r.env_secret_ref()
    if ref:
        refs.append(ref.get("name"))
        if ref.get("key") != SECRET_KEY:
            problems.append(f"secretKeyRef key is not {SECRET_KEY}")
    for name in refs:
        if r.secret(name) is None:
            problems.append(f"refers to a Secret {name} that is not rendered")
    if r.container.get("envFrom"):
        problems.append("uses envFrom")
    report.check(f"{o}: Secret has key {SECRET_KEY}, every reference resolves", problems)


def no_other_source(r, allowed):
    """Problems if the credential comes from anywhere but `allowed` (arg, file, env)."""
    problems = []
    if "arg" not in allowed and "mysecret" in r.flags:
        problems.append("has --mysecret")
    if "file" not in allowed and ("mysecret-file" in r.flags or r.secret_mounts()):
        problems.append("has --mysecret-file or a Secret volume")
    if "env" not in allowed and "MYSECRET" in r.env:
        problems.append("has env MYSECRET")
    return problems


def env_from_secret(r, secret_name=SECRET):
    ref = r.env_secret_ref()
    if not ref or ref.get("name") != secret_name or ref.get("key") != SECRET_KEY:
        return [f"env MYSECRET is not a secretKeyRef to {secret_name}/{SECRET_KEY}"]
    return []


def starts_wrong(r, name=SECRET):
    secret = r.secret(name)
    value = secret_value(secret) if secret else None
    return [] if value == "1234" else [f"Secret {name} starts as {value!r}, not the wrong 1234"]


def volume_reload(r, want_subpath):
    """Problems for the Secret-file overlays (volume-reload, rotate, subpath)."""
    problems = no_other_source(r, {"file"})
    if not r.reload():
        problems.append("no --reload")
    mounts = r.secret_mounts()
    if len(mounts) != 1 or mounts[0][1] != SECRET:
        return problems + [f"expected one mount of Secret {SECRET}, got {mounts}"]
    mount = mounts[0][0]
    path = r.flags.get("mysecret-file")
    if not mount.get("readOnly"):
        problems.append("Secret mount is not readOnly")
    if want_subpath:
        if mount.get("subPath") != SECRET_KEY:
            problems.append(f"mount has no subPath {SECRET_KEY}")
        if path != mount.get("mountPath"):
            problems.append(f"--mysecret-file {path} is not the subPath mount {mount.get('mountPath')}")
    else:
        if "subPath" in mount or "subPathExpr" in mount:
            problems.append("mount uses subPath (the kubelet would never update it)")
        if mount.get("mountPath") != SECRET_DIR:
            problems.append(f"mountPath is not {SECRET_DIR}")
        if path != f"{mount.get('mountPath')}/{SECRET_KEY}":
            problems.append(f"--mysecret-file {path} is not {mount.get('mountPath')}/{SECRET_KEY}")
    items = ((r.volumes.get(mount.get("name")) or {}).get("secret") or {}).get("items")
    if items:
        problems.append("Secret volume uses items (keep the key's own file name)")
    return problems


def scenario_checks(report, r, rendered):
    o = r.overlay
    if o == "no-arg":
        problems = no_other_source(r, set())
        if r.container.get("args"):
            problems.append(f"has args {r.container['args']}")
        report.check("no-arg: no args, no credential (the default 1234 -> CrashLoopBackOff)", problems)
    elif o == "arg":
        args = [str(a) for a in r.container.get("args") or []]
        pairs = list(itertools.pairwise(args))
        problems = no_other_source(r, {"arg"})
        if ("--mysecret", "4321") not in pairs:
            problems.append("no `--mysecret 4321` in args")
        if r.reload():
            problems.append("has --reload")
        report.check("arg: `--mysecret 4321` in the pod spec (the article's exposure)", problems)
    elif o == "env":
        problems = env_from_secret(r) + no_other_source(r, {"env"}) + starts_wrong(r)
        if r.reload():
            problems.append("has --reload")
        report.check("env: MYSECRET from secretKeyRef, no --reload, Secret starts wrong", problems)
    elif o == "env-reload":
        problems = env_from_secret(r) + no_other_source(r, {"env"}) + starts_wrong(r)
        if not r.reload():
            problems.append("no --reload")
        if r.volumes:
            problems.append("has volumes")
        report.check("env-reload: --reload but the secret only via env (never sees a change)", problems)
    elif o == "volume-reload":
        problems = volume_reload(r, want_subpath=False) + starts_wrong(r)
        report.check(f"volume-reload: Secret volume at {SECRET_DIR} without subPath, "
                     "--reload --mysecret-file into it, Secret starts wrong", problems)
    elif o == "rotate":
        problems = volume_reload(r, want_subpath=False)
        expected = [v for v in str(r.flags.get("expected-secret", "")).split(",") if v]
        secret = r.secret(SECRET)
        value = secret_value(secret) if secret else None
        if len(expected) != 2 or len(set(expected)) != 2:
            problems.append(f"--expected-secret is {expected}, not two values")
        if value not in expected:
            problems.append(f"Secret starts as {value!r}, not one the backend accepts {expected}")
        if value != "4321" or "5678" not in expected:
            problems.append("expected to start on 4321 and rotate to 5678")
        report.check("rotate: as volume-reload + --expected-secret old,new; Secret starts good",
                     problems)
    elif o == "subpath":
        problems = volume_reload(r, want_subpath=True) + starts_wrong(r)
        report.check("subpath: Secret mounted with subPath, --reload --mysecret-file on it",
                     problems)
    elif o == "reloader":
        annotations = r.deployment["metadata"].get("annotations") or {}
        problems = env_from_secret(r) + no_other_source(r, {"env"}) + starts_wrong(r)
        names = [n.strip() for n in str(annotations.get(RELOADER_ANNOTATION, "")).split(",")]
        if SECRET not in names:
            problems.append(f"Deployment metadata lacks {RELOADER_ANNOTATION}: {SECRET}")
        if r.reload():
            problems.append("has --reload")
        report.check(f"reloader: env + {RELOADER_ANNOTATION}: {SECRET} on the Deployment",
                     problems)
    elif o == "secret-generator":
        names = [s["metadata"]["name"] for s in r.secrets]
        hashed = [n for n in names if re.fullmatch(rf"{SECRET}-[a-z0-9]{{10}}", n)]
        problems = no_other_source(r, {"env"})
        if len(hashed) != 1 or len(names) != 1:
            problems.append(f"Secrets {names}: expected one {SECRET}-<hash>")
        else:
            problems += env_from_secret(r, hashed[0]) + starts_wrong(r, hashed[0])
        if r.reload():
            problems.append("has --reload")
        report.check(f"secret-generator: Secret {SECRET}-<hash> referenced by the Deployment",
                     problems)

        wrapped = rendered.get("wrapped-secret-generator")
        problems = []
        if wrapped is None:
            problems.append("wrapped-secret-generator.yaml was not rendered")
        else:
            new = [s["metadata"]["name"] for s in wrapped.secrets]
            ref = wrapped.env_secret_ref() or {}
            if len(new) != 1 or new == names or secret_value(wrapped.secrets[0]) != "4321":
                problems.append(f"changing the value gave Secrets {new} (was {names})")
            elif ref.get("name") != new[0]:
                problems.append(f"Deployment refers to {ref.get('name')}, not {new[0]}")
        report.check("secret-generator: a new value gives a new Secret name and pod template",
                     problems)


def file_checks(report, k8s_dir):
    """Checks on the kustomization files themselves."""
    problems = []
    for overlay in OVERLAYS:
        path = os.path.join(k8s_dir, "overlays", overlay, "kustomization.yaml")
        if not os.path.isfile(path):
            problems.append(f"missing {path}")
            continue
        with open(path, encoding="utf-8") as f:
            if not f.readline().startswith("# "):
                problems.append(f"{path} does not open with a comment saying what it shows")
    report.check("every overlay exists and opens with a comment on its scenario", problems)

    problems = []
    for root, _, files in os.walk(k8s_dir):
        for name in files:
            if not name.endswith((".yaml", ".yml")):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            # The nudger has a liveness probe: unlike the service, it never waits without
            # a listener.
            rel = os.path.relpath(path, k8s_dir).split(os.sep)
            words = ["commonLabels", "disableNameSuffixHash"]
            if rel[0] in ("base", "overlays") or (
                    rel[0] == "rendered" and not rel[-1].startswith("nudge")):
                words.append("livenessProbe:")
            for word in words:
                if re.search(rf"^\s*{word}", text, re.MULTILINE):
                    problems.append(f"{path} uses {word}")
    report.check("no commonLabels or disableNameSuffixHash in k8s/, no livenessProbe in the "
                 "service's manifests", problems)

    problems = []
    for part in ("", "cluster", "restart"):
        path = os.path.join(k8s_dir, "nudger", part, "kustomization.yaml")
        if not os.path.isfile(path):
            problems.append(f"missing {path}")
            continue
        with open(path, encoding="utf-8") as f:
            if not f.readline().startswith("# "):
                problems.append(f"{path} does not open with a comment saying what it is")
    report.check("k8s/nudger, its cluster variant and its restart component exist, each "
                 "opening with a comment", problems)

    path = os.path.join(k8s_dir, "base", "kustomization.yaml")
    with open(path, encoding="utf-8") as f:
        images = (yaml.safe_load(f) or {}).get("images") or []
    report.check(f"base kustomization has an images: entry for {IMAGE.split(':')[0]}", [
        "" if any(i.get("name") == IMAGE.split(":")[0] for i in images) else f"none in {path}"])


# What scripts/nudge.sh asks of the API, and so all its Role may grant (tests/nudge.sh
# shows the script makes exactly these requests): (API group, resource) -> verbs.
NUDGE_NAME = "secret-nudge"
NUDGE_RULES = {("", "secrets"): {"get"}, ("", "configmaps"): {"get"},
               ("", "pods"): {"get", "list", "patch"}, ("apps", "replicasets"): {"get"}}


def nudge_rbac_checks(report, render_dir):
    """The ServiceAccount, Role and RoleBinding of k8s/nudge-rbac, as such and moved."""
    for name, namespace in (("nudge-rbac", NAMESPACE), ("wrapped-nudge-rbac", "shop")):
        path = os.path.join(render_dir, f"{name}.yaml")
        if not os.path.isfile(path):
            report.check(f"{name}: rendered", ["no rendered output"])
            continue
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        kinds = sorted(d.get("kind") for d in docs)
        problems = [] if kinds == ["Role", "RoleBinding", "ServiceAccount"] else [f"objects {kinds}"]
        for doc in docs:
            meta = doc.get("metadata", {})
            if meta.get("name") != NUDGE_NAME or meta.get("namespace") != namespace:
                problems.append(f"{doc.get('kind')} {meta.get('namespace')}/{meta.get('name')}")
            labels = meta.get("labels") or {}
            if labels.get("app.kubernetes.io/part-of") != "hello-path-rs":
                problems.append(f"{doc.get('kind')} lacks app.kubernetes.io/part-of")
        report.check(f"{name}: ServiceAccount, Role, RoleBinding {NUDGE_NAME} in namespace {namespace}",
                     problems)

        role = next((d for d in docs if d.get("kind") == "Role"), {})
        granted, problems = {}, []
        for rule in role.get("rules") or []:
            if set(rule) - {"apiGroups", "resources", "verbs"}:
                problems.append(f"rule with {sorted(set(rule) - {'apiGroups', 'resources', 'verbs'})}")
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    granted.setdefault((group, resource), set()).update(rule.get("verbs") or [])
        if granted != NUDGE_RULES:
            problems.append(f"grants {sorted((g, r, sorted(v)) for (g, r), v in granted.items())}")
        report.check(f"{name}: the Role grants exactly get secrets and configmaps, "
                     "get/list/patch pods, get replicasets.apps", problems)

        binding = next((d for d in docs if d.get("kind") == "RoleBinding"), {})
        want_subject = [{"kind": "ServiceAccount", "name": NUDGE_NAME, "namespace": namespace}]
        ref = binding.get("roleRef") or {}
        report.check(f"{name}: the RoleBinding binds that Role to that ServiceAccount, in {namespace}", [
            "" if (ref.get("kind"), ref.get("name")) == ("Role", NUDGE_NAME) else f"roleRef {ref}",
            "" if binding.get("subjects") == want_subject else f"subjects {binding.get('subjects')}",
        ])


# The nudger (SPEC §9, k8s/nudger): its requests, and so all its Role may grant; the
# component k8s/nudger/restart adds RESTART_RULES (--restart-unreloadable).
NUDGER = "hello-path-nudger"
NUDGER_IMAGE = f"localhost/{NUDGER}:0.1.0"
NUDGER_RULES = {("", "secrets"): {"list", "watch"}, ("", "configmaps"): {"list", "watch"},
                ("", "pods"): {"list", "watch", "patch"}, ("apps", "replicasets"): {"get"}}
RESTART_RULES = {("apps", kind): {"get", "patch"}
                 for kind in ("deployments", "statefulsets", "daemonsets")}
# Its command line (fixed by the brief of issue 18): value flags and Go-style booleans.
NUDGER_VALUE_FLAGS = {"namespace", "kubeconfig", "context", "listen-addr"}
NUDGER_BOOL_FLAGS = {"all-namespaces", "restart-unreloadable", "dry-run"}
NUDGER_LABELS = {"app.kubernetes.io/name": NUDGER, "app.kubernetes.io/instance": NUDGER,
                 "app.kubernetes.io/part-of": "hello-path-rs",
                 "app.kubernetes.io/component": "controller",
                 "app.kubernetes.io/version": "0.1.0", "app.kubernetes.io/managed-by": "kustomize"}
NUDGER_SELECTOR = {k: NUDGER_LABELS[k] for k in SELECTOR_KEYS}


def nudger_args(args):
    """Problems with the nudger's container args, parsed as its command line does."""
    problems, seen = [], set()
    args = [str(a) for a in args]
    i = 0
    while i < len(args):
        match = re.fullmatch(r"--([a-z][a-z-]*)(?:=(.*))?", args[i])
        i += 1
        if not match:
            problems.append(f"unexpected argument {args[i - 1]!r}")
            continue
        name, value = match.groups()
        if name in NUDGER_BOOL_FLAGS:
            if value not in (None, "true", "false"):
                problems.append(f"--{name} takes =true or =false, not {value!r}")
        elif name in NUDGER_VALUE_FLAGS:
            if value is None:
                if i >= len(args):
                    problems.append(f"--{name} needs a value")
                i += 1
        else:
            problems.append(f"unknown flag --{name}")
        if name in seen and name != "namespace":
            problems.append(f"--{name} given twice")
        seen.add(name)
    return problems


def granted_rules(role):
    """{(apiGroup, resource): verbs} of a Role or ClusterRole."""
    granted = {}
    for rule in role.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                granted.setdefault((group, resource), set()).update(rule.get("verbs") or [])
    return granted


def nudger_checks(report, render_dir):
    """The nudger's two variants, as rendered and wrapped into namespace shop with the
    restart component and another image."""
    # tests/nudger.sh runs the controller against a fake API server that enforces its own
    # copy of the Role: the same rights as k8s/nudger with k8s/nudger/restart, or the two
    # would drift apart.
    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "nudger", "role.json")
    with open(fixture, encoding="utf-8") as f:
        enforced = granted_rules(json.load(f))
    want = {**NUDGER_RULES, **RESTART_RULES}
    report.check("tests/fixtures/nudger/role.json (what tests/nudger.sh enforces) grants what "
                 "k8s/nudger with k8s/nudger/restart grants",
                 [] if enforced == want else [f"grants {sorted((g, r, sorted(v)) for (g, r), v in enforced.items())}"])
    for name, namespace, cluster, restart in (
            ("nudger", NAMESPACE, False, False), ("nudger-cluster", NAMESPACE, True, False),
            ("wrapped-nudger", "shop", False, True), ("wrapped-nudger-cluster", "shop", True, True)):
        path = os.path.join(render_dir, f"{name}.yaml")
        if not os.path.isfile(path):
            report.check(f"{name}: rendered", ["no rendered output"])
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        docs = [d for d in yaml.safe_load_all(text) if d]
        by_kind = {d.get("kind"): d for d in docs}
        role_kind = "ClusterRole" if cluster else "Role"
        kinds = ["Deployment", role_kind, f"{role_kind}Binding", "Service", "ServiceAccount"]
        problems = [] if sorted(d.get("kind") for d in docs) == sorted(kinds) else [
            f"objects {sorted(d.get('kind') for d in docs)}, not {sorted(kinds)}"]
        for doc in docs:
            meta = doc.get("metadata", {})
            want_ns = None if doc.get("kind", "").startswith("Cluster") else namespace
            if meta.get("name") != NUDGER or meta.get("namespace") != want_ns:
                problems.append(f"{doc.get('kind')} {meta.get('namespace')}/{meta.get('name')}")
            labels = meta.get("labels") or {}
            if any(labels.get(k) != v for k, v in NUDGER_LABELS.items()):
                problems.append(f"{doc.get('kind')} labels {labels}")
        # Moving the rendered copy (k8s/rendered/nudger*.yaml) to another namespace is a
        # replacement of `namespace: hello-path`, which must then be the only one there.
        for line in re.findall(r"^\s*namespace:.*$", text, re.MULTILINE):
            if line.split(":", 1)[1].strip() != namespace:
                problems.append(f"a line {line.strip()!r}")
        where = "cluster-wide rights" if cluster else f"rights in {namespace}"
        report.check(f"{name}: ServiceAccount, {role_kind}, {role_kind}Binding, Deployment, "
                     f"Service {NUDGER} in namespace {namespace} ({where}), recommended labels "
                     "on each", problems)

        role = by_kind.get(role_kind, {})
        granted, problems = {}, []
        for rule in role.get("rules") or []:
            if set(rule) - {"apiGroups", "resources", "verbs"}:
                problems.append(f"rule with {sorted(set(rule) - {'apiGroups', 'resources', 'verbs'})}")
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    granted.setdefault((group, resource), set()).update(rule.get("verbs") or [])
        want = {**NUDGER_RULES, **(RESTART_RULES if restart else {})}
        if granted != want:
            problems.append(f"grants {sorted((g, r, sorted(v)) for (g, r), v in granted.items())}")
        report.check(f"{name}: the {role_kind} grants exactly list/watch secrets and "
                     "configmaps, list/watch/patch pods, get replicasets.apps"
                     + (", get/patch deployments, statefulsets, daemonsets" if restart else ""),
                     problems)

        binding = by_kind.get(f"{role_kind}Binding", {})
        ref = binding.get("roleRef") or {}
        want_subject = [{"kind": "ServiceAccount", "name": NUDGER, "namespace": namespace}]
        report.check(f"{name}: the {role_kind}Binding binds it to the ServiceAccount of {namespace}", [
            "" if (ref.get("kind"), ref.get("name")) == (role_kind, NUDGER) else f"roleRef {ref}",
            "" if binding.get("subjects") == want_subject else f"subjects {binding.get('subjects')}",
        ])

        dep = by_kind.get("Deployment", {})
        spec = dep.get("spec") or {}
        template = spec.get("template") or {}
        pod = template.get("spec") or {}
        containers = pod.get("containers") or [{}]
        c = containers[0]
        svc = (by_kind.get("Service") or {}).get("spec") or {}
        template_labels = (template.get("metadata") or {}).get("labels") or {}
        report.check(f"{name}: Deployment and Service select exactly name + instance", [
            "" if (spec.get("selector") or {}).get("matchLabels") == NUDGER_SELECTOR else
            f"Deployment selector {spec.get('selector')}",
            "" if svc.get("selector") == NUDGER_SELECTOR else
            f"Service selector {svc.get('selector')}",
            "" if all(template_labels.get(k) == v for k, v in NUDGER_LABELS.items()) else
            f"pod template labels {template_labels}",
        ])

        psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}
        caps = csc.get("capabilities") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        problems = []
        if psc.get("runAsNonRoot") is not True:
            problems.append("pod runAsNonRoot is not true")
        if (psc.get("runAsUser"), psc.get("runAsGroup")) != (UID, UID):
            problems.append(f"pod runAsUser/runAsGroup are not {UID}")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append("no seccompProfile RuntimeDefault")
        if annotations.get(SECCOMP_ANNOTATION) != "runtime/default":
            problems.append(f"no {SECCOMP_ANNOTATION}: runtime/default annotation (Kubernetes < 1.19)")
        if csc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation is not false")
        if caps.get("drop") != ["ALL"] or caps.get("add"):
            problems.append("capabilities are not drop [ALL] without add")
        if csc.get("readOnlyRootFilesystem") is not True:
            problems.append("readOnlyRootFilesystem is not true")
        if csc.get("privileged") or "runAsUser" in csc or "runAsNonRoot" in csc:
            problems.append("the container overrides the pod's user or privileges")
        if any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
            problems.append("uses host namespaces")
        if pod.get("volumes"):
            problems.append(f"volumes {pod['volumes']}")
        report.check(f"{name}: restricted Pod Security (non-root {UID}, seccomp, no caps, "
                     "ro rootfs, no volumes)", problems)

        report.check(f"{name}: runs as its ServiceAccount, with the token mounted (it needs it)", [
            "" if pod.get("serviceAccountName") == NUDGER else
            f"serviceAccountName {pod.get('serviceAccountName')}",
            "" if pod.get("automountServiceAccountToken") is True else
            "automountServiceAccountToken is not true",
        ])

        image = NUDGER_IMAGE
        if name.startswith("wrapped-"):
            image = "example.invalid/hello-path-nudger:override"
        ports = c.get("ports") or []
        want_args = ["--listen-addr=0.0.0.0:8080"] + (["--all-namespaces"] if cluster else [])
        want_args += ["--restart-unreloadable"] if restart else []
        report.check(f"{name}: one container, image {image}, IfNotPresent, port http 8080, "
                     f"args {want_args}", [
            "" if len(containers) == 1 and not pod.get("initContainers") else "not one container",
            "" if c.get("image") == image else f"image {c.get('image')}",
            "" if c.get("imagePullPolicy") == "IfNotPresent" else "imagePullPolicy is not IfNotPresent",
            "" if any(p.get("name") == "http" and p.get("containerPort") == 8080 for p in ports)
            else f"ports {ports}",
            "" if c.get("args") == want_args else f"args {c.get('args')}",
        ] + nudger_args(c.get("args") or []))

        problems = []
        for probe, want_path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            if (get.get("path"), get.get("port")) != (want_path, "http"):
                problems.append(f"{probe} httpGet {get}, not {want_path} on port http")
        live = c.get("livenessProbe") or {}
        if live.get("periodSeconds", 10) * live.get("failureThreshold", 3) < 20:
            problems.append("liveness gives up within 20 s")
        report.check(f"{name}: readiness GET /readyz, liveness GET /healthz, on port http", problems)

        resources = c.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        strategy = spec.get("strategy") or {}
        grace = pod.get("terminationGracePeriodSeconds")
        report.check(f"{name}: requests cpu + memory, a memory limit; 1 replica, "
                     "maxUnavailable 0, a short grace period", [
            "" if "cpu" in requests and "memory" in requests else f"requests {requests}",
            "" if "memory" in limits else "no memory limit",
            "" if spec.get("replicas") == 1 else f"replicas {spec.get('replicas')}",
            "" if (strategy.get("rollingUpdate") or {}).get("maxUnavailable") == 0
            else f"strategy {strategy}",
            "" if isinstance(grace, int) and 0 < grace <= 30
            else f"terminationGracePeriodSeconds {grace}",
        ])

        ports = svc.get("ports") or []
        report.check(f"{name}: Service port http -> http (for scraping /metrics)", [
            "" if [(p.get("name"), p.get("targetPort")) for p in ports] == [("http", "http")]
            else f"ports {ports}"])


def check(render_dir, k8s_dir):
    report = Report()
    file_checks(report, k8s_dir)
    rendered = {}
    for name in OVERLAYS + ["wrapped-secret-generator"]:
        path = os.path.join(render_dir, f"{name}.yaml")
        if os.path.isfile(path):
            rendered[name] = Rendered(name.replace("wrapped-", ""), path)
    for overlay in OVERLAYS:
        if overlay not in rendered:
            report.check(f"{overlay}: rendered", ["no rendered output"])
            continue
        common_checks(report, rendered[overlay])
        scenario_checks(report, rendered[overlay], rendered)
    wrapped = rendered.get("wrapped-secret-generator")
    report.check("images: override from a wrapping kustomization reaches the container", [
        "" if wrapped and wrapped.container.get("image") == "example.invalid/hello-path-rs:override"
        else "image not overridden"])
    nudge_rbac_checks(report, render_dir)
    nudger_checks(report, render_dir)
    return 1 if report.failed else 0


def as_1_15(path):
    """Prints the documents in `path` without POST_1_15_FIELDS."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in POST_1_15_FIELDS}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node
    with open(path, encoding="utf-8") as f:
        docs = [strip(d) for d in yaml.safe_load_all(f) if d]
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "check":
        return check(argv[2], argv[3])
    if len(argv) == 3 and argv[1] == "as-1.15":
        return as_1_15(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
