"""A small fake Kubernetes API server for tests/nudge.sh: the real kubectl talks to it.

It serves recorded objects (Pods, Secrets, ReplicaSets, and their namespaces) the way a 1.21 API
server does, over plain HTTP on 127.0.0.1, with just enough discovery for kubectl to map
`pods`, `secrets` and `replicasets.apps`. It applies and records PATCHes, authorizes every
request against an RBAC Role (the one in k8s/nudge-rbac, converted to JSON), and refuses
or hangs chosen requests on demand, so that the test asserts what scripts/nudge.sh really
asks for and does, through kubectl's own requests, templates and error messages.

    fake_apiserver.py serve --fixtures DIR --port-file FILE --log FILE
            [--role ROLE.json --user USER] [--deny VERB:RESOURCE[:NAME]]...
            [--vanish RESOURCE:NAME]... [--hang PATH]...
        DIR holds pods.json, secrets.json, replicasets.json (each a List; a missing file is
        an empty list). Binds 127.0.0.1:0 and writes the port to FILE once it listens.
        Every request is one line of the log (see Log). --role: a request no rule of the
        Role allows gets 403, as the RBAC authorizer answers it (discovery and /version are
        always allowed, as the system:discovery and system:public-info-viewer roles do);
        --deny: 403 for that verb on that resource (and name) anyway; --vanish: the object
        is listed but a GET or PATCH of it is 404 (deleted meanwhile); --hang: a request for
        that path is answered only after 30 s.

    fake_apiserver.py ctl PORT_FILE bump-secret NAMESPACE NAME
        Changes the Secret as `kubectl patch secret` would: a new resourceVersion.

    fake_apiserver.py role-verbs ROLE.json
        Prints "VERB RESOURCE" for everything the (first) Role in ROLE.json grants.

    fake_apiserver.py from-manifests LIST.json DIR
        From rendered manifests (a List, e.g. `kubectl create --dry-run=client -o json -f
        k8s/rendered/rotate.yaml`): writes DIR/secrets.json (with a resourceVersion, data
        instead of stringData), and for every Deployment the ReplicaSet and the Running pods
        (spec.replicas of them) its controller would create, to DIR/replicasets.json and
        DIR/pods.json.

ConfigMaps are served as Secrets are: DIR/configmaps.json, `ctl PORT_FILE bump-configmap
NAMESPACE NAME`.

Log: one line per request, fields separated by one space:
    VERB RESOURCE NAMESPACE NAME STATUS TIMEOUT BODY
VERB is the RBAC verb (get, list, patch, ...) or `-` for a non-resource path, then
RESOURCE is that path; NAMESPACE, NAME and TIMEOUT (kubectl's ?timeout=, which
--request-timeout sets) are `-` when absent; BODY, last, is a PATCH's body as compact JSON
with sorted keys, else `-`.
"""

import argparse
import base64
import copy
import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SERVER_VERSION = {
    "major": "1", "minor": "21", "gitVersion": "v1.21.3+k3s1",
    "gitCommit": "1d1f220fbee9cdeb5416b76b707dde8c231121f2", "gitTreeState": "clean",
    "buildDate": "2021-07-22T20:52:14Z", "goVersion": "go1.16.6", "compiler": "gc",
    "platform": "linux/amd64",
}
HANG_SECONDS = 30

# What kubectl needs to map the names it is given to resources (legacy discovery, which
# kubectl 1.32 falls back to when the answer is not the aggregated kind).
RESOURCES = {
    "v1": [
        ("namespaces", "Namespace", False, ["ns"]),
        ("pods", "Pod", True, ["po"]),
        ("secrets", "Secret", True, []),
        ("services", "Service", True, ["svc"]),
        ("configmaps", "ConfigMap", True, ["cm"]),
        ("serviceaccounts", "ServiceAccount", True, ["sa"]),
    ],
    "apps/v1": [
        ("deployments", "Deployment", True, ["deploy"]),
        ("replicasets", "ReplicaSet", True, ["rs"]),
        ("statefulsets", "StatefulSet", True, ["sts"]),
        ("daemonsets", "DaemonSet", True, ["ds"]),
    ],
    # Served for discovery only: kubectl create --dry-run=client reads k8s/ through them.
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True, []),
        ("rolebindings", "RoleBinding", True, []),
    ],
}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
# resource -> (API group, fixture file) of the objects served.
SERVED = {"pods": ("", "pods.json"), "secrets": ("", "secrets.json"),
          "replicasets": ("apps", "replicasets.json")}
KINDS = {"pods": "Pod", "secrets": "Secret", "replicasets": "ReplicaSet",
         "namespaces": "Namespace"}
SERVED["configmaps"] = ("", "configmaps.json")
KINDS["configmaps"] = "ConfigMap"

PATH_RE = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[a-z0-9.-]+)/v1)"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+))?$")


def resource_list(group_version):
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": [
            {"name": name, "singularName": kind.lower(), "namespaced": namespaced,
             "kind": kind, "verbs": VERBS, "shortNames": short}
            for name, kind, namespaced, short in RESOURCES[group_version]
        ],
    }


DISCOVERY = {
    "/version": SERVER_VERSION,
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]},
    "/api/v1": resource_list("v1"),
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": group, "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"}}
        for group in ("apps", "rbac.authorization.k8s.io")]},
    "/apis/apps/v1": resource_list("apps/v1"),
    "/apis/rbac.authorization.k8s.io/v1": resource_list("rbac.authorization.k8s.io/v1"),
}


def load_objects(path):
    """The objects in a JSON file: a List, one object, or several objects one after the
    other (as `kubectl create --dry-run=client -o json -f` prints them)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    decoder, objects, pos = json.JSONDecoder(), [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return objects
        doc, pos = decoder.raw_decode(text, pos)
        objects.extend(doc.get("items", []) if doc.get("kind", "").endswith("List") else [doc])


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (a strategic merge patch of a map is the same)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


class Store:
    """The objects served, keyed by (resource, namespace, name); one lock for all."""

    def __init__(self, fixtures):
        self.lock = threading.Lock()
        self.objects = {}
        self.version = 1000
        for resource, (_, filename) in SERVED.items():
            path = os.path.join(fixtures, filename)
            if not os.path.isfile(path):
                continue
            for item in load_objects(path):
                meta = item["metadata"]
                self.objects[(resource, meta.get("namespace", "default"), meta["name"])] = item
                rv = meta.get("resourceVersion", "")
                if rv.isdigit():
                    self.version = max(self.version, int(rv))

    def next_version(self):
        self.version += 1
        return str(self.version)


class Handler(BaseHTTPRequestHandler):
    """One request: discovery, a served object, or the /_fake/ control path."""

    server_version = "fake-apiserver"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass  # the request log is our own (Server.record)

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        self.handle_request("GET")

    def do_PATCH(self):
        self.handle_request("PATCH")

    def do_PUT(self):
        self.handle_request("PUT")

    def do_POST(self):
        self.handle_request("POST")

    def do_DELETE(self):
        self.handle_request("DELETE")

    def handle_request(self, method):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        timeout = query.get("timeout", ["-"])[0]
        body = self.read_body()
        srv = self.server
        if url.path.startswith("/_fake/"):
            return self.control(method, url.path)
        if url.path in srv.hang:
            time.sleep(HANG_SECONDS)
        if url.path in DISCOVERY and method == "GET":
            srv.record("-", url.path, "-", "-", 200, timeout)
            return self.send_json(200, DISCOVERY[url.path])
        match = PATH_RE.match(url.path)
        if not match:
            srv.record("-", url.path, "-", "-", 404, timeout)
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        group = match.group("group") or ""
        ns, resource, name = match.group("ns"), match.group("resource"), match.group("name")
        if resource == "namespaces" and ns is None and name:
            ns = name  # RBAC sees a namespace's own name as its namespace
        if method == "GET":
            verb = "get" if name else ("watch" if query.get("watch") else "list")
        else:
            verb = {"PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}[method]
        patch_text = "-"
        if method == "PATCH":
            try:
                patch_text = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
            except ValueError:
                patch_text = body.decode(errors="replace")

        def answer(code, payload):
            srv.record(verb, resource, ns or "-", name or "-", code, timeout, patch_text)
            return self.send_json(code, payload)

        denied = srv.denied(verb, group, resource, name)
        if denied:
            what = f'{resource} "{name}"' if name else resource
            scope = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            return answer(403, status(403, "Forbidden", (
                f'{what} is forbidden: User "{srv.user}" cannot {verb} resource "{resource}" '
                f'in API group "{group}"{scope}'),
                {"name": name or "", "group": group, "kind": resource}))
        if resource == "namespaces" and verb == "get":
            # kubectl asks for the namespace after a 404 in it, to say which is missing.
            if any(key[1] == name for key in srv.store.objects):
                return answer(200, {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name}, "status": {"phase": "Active"}})
            return answer(404, status(404, "NotFound", f'namespaces "{name}" not found',
                                      {"name": name, "kind": "namespaces"}))
        if resource not in SERVED or SERVED[resource][0] != group or ns is None:
            return answer(405, status(405, "MethodNotAllowed", "not served by the fake"))

        store = srv.store
        with store.lock:
            if not name:
                if verb != "list":
                    return answer(405, status(405, "MethodNotAllowed", f"{verb} is not served by the fake"))
                items = []
                for (res, item_ns, _), obj in sorted(store.objects.items()):
                    if res == resource and item_ns == ns:
                        item = copy.deepcopy(obj)
                        item.pop("kind", None)
                        item.pop("apiVersion", None)
                        items.append(item)
                return answer(200, {"kind": KINDS[resource] + "List",
                                    "apiVersion": "apps/v1" if group else "v1",
                                    "metadata": {"resourceVersion": str(store.version)},
                                    "items": items})
            key = (resource, ns, name)
            obj = store.objects.get(key)
            if obj is None or f"{resource}:{name}" in srv.vanish:
                return answer(404, status(404, "NotFound", f'{resource} "{name}" not found',
                                          {"name": name, "group": group, "kind": resource}))
            if verb == "get":
                return answer(200, obj)
            if verb == "patch":
                kind = (self.headers.get("Content-Type") or "").split(";")[0]
                if kind not in ("application/merge-patch+json",
                                "application/strategic-merge-patch+json"):
                    return answer(415, status(415, "UnsupportedMediaType", f"the fake does not apply {kind}"))
                try:
                    patch = json.loads(body)
                except ValueError as err:
                    return answer(400, status(400, "BadRequest", f"invalid JSON patch: {err}"))
                patched = merge_patch(obj, patch)
                patched["metadata"]["resourceVersion"] = store.next_version()
                store.objects[key] = patched
                return answer(200, patched)
            return answer(405, status(405, "MethodNotAllowed", f"{verb} is not served by the fake"))

    def control(self, method, path):
        """POST /_fake/bump/secrets/NS/NAME: a new resourceVersion, as a change would."""
        match = re.fullmatch(r"/_fake/bump/(secrets|configmaps)/([^/]+)/([^/]+)", path)
        store = self.server.store
        with store.lock:
            obj = store.objects.get(match.groups()) if match else None
            if method != "POST" or obj is None:
                return self.send_json(404, status(404, "NotFound", f"no control {method} {path}"))
            obj["metadata"]["resourceVersion"] = store.next_version()
            return self.send_json(200, obj)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, args):
        super().__init__(("127.0.0.1", 0), Handler)
        self.store = Store(args.fixtures)
        self.user = args.user
        self.rules = None
        if args.role:
            roles = [o for o in load_objects(args.role) if o.get("kind") == "Role"]
            self.rules = (roles[0].get("rules") or []) if roles else []
        self.deny = [d.split(":") for d in args.deny]
        self.vanish = set(args.vanish)
        self.hang = set(args.hang)
        self.log_path = args.log
        self.log_lock = threading.Lock()

    def denied(self, verb, group, resource, name):
        for rule in self.deny:
            if rule[0] == verb and rule[1] == resource and (len(rule) < 3 or rule[2] == name):
                return True
        if self.rules is None:
            return False
        for rule in self.rules:
            if (group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
                    and verb in rule.get("verbs", [])
                    and (not rule.get("resourceNames") or name in rule["resourceNames"])):
                return False
        return True

    def record(self, verb, resource, ns, name, code, timeout, body="-"):
        with self.log_lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{verb} {resource} {ns} {name} {code} {timeout} {body}\n")


def serve(args):
    server = Server(args)
    port_tmp = args.port_file + ".tmp"
    with open(port_tmp, "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(port_tmp, args.port_file)
    server.serve_forever()


def ctl(port_file, action, namespace, name):
    if action not in ("bump-secret", "bump-configmap"):
        print(f"fake_apiserver.py: unknown control {action}", file=sys.stderr)
        return 2
    with open(port_file, encoding="utf-8") as f:
        port = f.read().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_fake/bump/{action[5:]}s/{namespace}/{name}", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        print(json.load(response)["metadata"]["resourceVersion"])
    return 0


def role_verbs(path):
    roles = [o for o in load_objects(path) if o.get("kind") == "Role"]
    for rule in (roles[0].get("rules") or []) if roles else []:
        for resource in rule.get("resources", []):
            for verb in rule.get("verbs", []):
                print(verb, resource)
    return 0


def short_hash(text, length):
    """A name suffix made the way Kubernetes controllers make them (no vowels)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def from_manifests(list_path, out_dir):
    items = load_objects(list_path)
    version = 5000
    secrets, replicasets, pods = [], [], []

    def meta_of(name, ns, uid_seed, **extra):
        nonlocal version
        version += 1
        return dict({"name": name, "namespace": ns, "resourceVersion": str(version),
                     "uid": hashlib.sha256(uid_seed.encode()).hexdigest()[:32],
                     "creationTimestamp": "2026-12-01T10:00:00Z"}, **extra)

    for item in items:
        kind, meta = item.get("kind"), item.get("metadata", {})
        ns = meta.get("namespace", "default")
        if kind == "Secret":
            secret = copy.deepcopy(item)
            data = dict(secret.get("data") or {})
            for key, value in (secret.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            secret["data"] = data
            secret["metadata"] = dict(meta, **meta_of(meta["name"], ns, "secret/" + meta["name"]))
            secrets.append(secret)
        elif kind == "Deployment":
            template = item["spec"]["template"]
            rs_name = f"{meta['name']}-{short_hash(json.dumps(template, sort_keys=True), 10)}"
            dep_uid = hashlib.sha256(("deployment/" + meta["name"]).encode()).hexdigest()[:32]
            rs_meta = meta_of(rs_name, ns, "rs/" + rs_name, labels=template["metadata"].get("labels", {}),
                              ownerReferences=[{"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": meta["name"], "uid": dep_uid,
                                                "controller": True, "blockOwnerDeletion": True}])
            replicasets.append({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": rs_meta,
                                "spec": {"replicas": item["spec"].get("replicas", 1),
                                         "selector": item["spec"]["selector"], "template": template}})
            for i in range(item["spec"].get("replicas", 1)):
                pod_name = f"{rs_name}-{short_hash(rs_name + str(i), 5)}"
                pod_meta = meta_of(pod_name, ns, "pod/" + pod_name,
                                   labels=template["metadata"].get("labels", {}),
                                   ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                     "name": rs_name, "uid": rs_meta["uid"],
                                                     "controller": True, "blockOwnerDeletion": True}])
                if template["metadata"].get("annotations"):
                    pod_meta["annotations"] = dict(template["metadata"]["annotations"])
                pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
                             "spec": dict(template["spec"], nodeName="k3s-node"),
                             "status": {"phase": "Running"}})
    os.makedirs(out_dir, exist_ok=True)
    for filename, objects, list_kind in (("secrets.json", secrets, "SecretList"),
                                         ("replicasets.json", replicasets, "ReplicaSetList"),
                                         ("pods.json", pods, "PodList")):
        with open(os.path.join(out_dir, filename), "w", encoding="utf-8") as f:
            json.dump({"apiVersion": "v1", "kind": list_kind, "items": objects}, f, indent=1)
    return 0


def main(argv):
    parser = argparse.ArgumentParser(prog="fake_apiserver.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--fixtures", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--role")
    p.add_argument("--user", default="system:serviceaccount:test:secret-nudge")
    p.add_argument("--deny", action="append", default=[])
    p.add_argument("--vanish", action="append", default=[])
    p.add_argument("--hang", action="append", default=[])
    p = sub.add_parser("ctl")
    p.add_argument("port_file")
    p.add_argument("action")
    p.add_argument("namespace")
    p.add_argument("name")
    p = sub.add_parser("role-verbs")
    p.add_argument("role_json")
    p = sub.add_parser("from-manifests")
    p.add_argument("list_json")
    p.add_argument("out_dir")
    args = parser.parse_args(argv[1:])
    if args.command == "serve":
        return serve(args)
    if args.command == "ctl":
        return ctl(args.port_file, args.action, args.namespace, args.name)
    if args.command == "role-verbs":
        return role_verbs(args.role_json)
    return from_manifests(args.list_json, args.out_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
