"""A small fake Kubernetes API server for tests/nudge.sh and tests/nudger.sh: the real kubectl
and the real hello-path-nudger talk to it.

It serves recorded objects (Pods, Secrets, ReplicaSets, and their namespaces) the way a 1.21 API
server does, over plain HTTP on 127.0.0.1, with just enough discovery for kubectl to map
`pods`, `secrets` and `replicasets.apps`. It applies and records PATCHes, authorizes every
request against an RBAC Role (the one in k8s/nudge-rbac, converted to JSON), and refuses
or hangs chosen requests on demand, so that the test asserts what scripts/nudge.sh really
asks for and does, through kubectl's own requests, templates and error messages.

    fake_apiserver.py serve --fixtures DIR --port-file FILE --log FILE
            [--role ROLE.json --user USER] [--deny VERB:RESOURCE[:NAME]]...
            [--vanish RESOURCE:NAME]... [--hang PATH]...
            [--tls-dir DIR [--tokens FILE]] [--control-port-file FILE]
            [--max-watch-seconds N] [--cluster-role] [--port N] [--first-version N]
        DIR holds pods.json, secrets.json, configmaps.json, replicasets.json, deployments.json,
        statefulsets.json, daemonsets.json (each a List; a missing file is an empty list).
        Binds 127.0.0.1:0 (--port: that port, to come back where it was, with
        --first-version above the versions it gave before) and writes the port to FILE
        once it listens.
        Every request is one line of the log (see Log). --role: a request no rule of the
        Role allows gets 403, as the RBAC authorizer answers it (discovery and /version are
        always allowed, as the system:discovery and system:public-info-viewer roles do);
        --deny: 403 for that verb on that resource (and name) anyway; --vanish: the object
        is listed but a GET or PATCH of it is 404 (deleted meanwhile); --hang: a request for
        that path is answered only after 30 s.
        Lists take limit and continue (pages); a GET with watch=1 streams watch events
        (chunked, one JSON object a line) from its resourceVersion: ADDED, MODIFIED and
        DELETED of every change made since (PATCHes and the controls below), BOOKMARK on
        demand when allowWatchBookmarks=true, until its timeoutSeconds (at most
        --max-watch-seconds) ends it cleanly. A PATCH whose metadata.resourceVersion is not
        the object's is 409 Conflict (the precondition kubectl and controllers rely on).
        --tls-dir: HTTPS with DIR/server.crt and DIR/server.key (made by `certs`); clients
        must then authenticate, with a client certificate signed by DIR/ca.crt (the user is
        its CN) or a bearer token of --tokens FILE (lines `TOKEN USER`, read at every
        request, so that a test rotates a token by rewriting the file); else 401.
        --control-port-file: the /_fake/ controls on a plain-HTTP port of their own (needed
        with --tls-dir). --role: cluster-scoped requests (all namespaces) are refused as a
        Role cannot grant them, unless --cluster-role says the rules are a ClusterRole's.

    fake_apiserver.py certs DIR
        Makes, with openssl, a CA, a server certificate for 127.0.0.1 and localhost, and two
        client certificates (CN test-user): client-ec (an EC key in SEC1, as k3s writes) and
        client-rsa (an RSA key in PKCS#1).

    fake_apiserver.py ctl PORT_FILE ACTION [ARG...]
        bump-secret NS NAME        a new resourceVersion, data unchanged (prints it)
        set-data RESOURCE NS NAME JSON [RV]   data (and binaryData) replaced (prints the RV)
        create RESOURCE NS JSON    a new object (prints its resourceVersion)
        delete RESOURCE NS NAME
        bookmark                   a BOOKMARK on every open watch that asked for them
        drop                       every open watch cut off without its last chunk
        expire                     every open watch ends with an ERROR event, code 410
        compact                    watches from a resourceVersion older than now: 410
        compact-status             the same, answered with HTTP 410 instead of an event
        malformed                  a line that is not JSON, then an event whose object
                                   cannot be read, on every open watch
        deny [VERB:RESOURCE[:NAME]...]   the --deny rules, replaced
        watches                    how many watches are open (prints it)

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

Log: one line per request (a watch when it starts), fields separated by one space:
    VERB RESOURCE NAMESPACE NAME STATUS TIMEOUT BODY [USER]
VERB is the RBAC verb (get, list, patch, ...) or `-` for a non-resource path, then
RESOURCE is that path; NAMESPACE, NAME and TIMEOUT (kubectl's ?timeout=, which
--request-timeout sets) are `-` when absent; BODY, last, is a PATCH's body as compact JSON
with sorted keys, else `-`. A watch's NAME is `rv=N`, its resourceVersion, and its TIMEOUT
the timeoutSeconds it is given. USER, with --tls-dir only: who authenticated (`-`: nobody).
"""

import argparse
import base64
import copy
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
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
          "configmaps": ("", "configmaps.json"),
          "replicasets": ("apps", "replicasets.json"),
          "deployments": ("apps", "deployments.json"),
          "statefulsets": ("apps", "statefulsets.json"),
          "daemonsets": ("apps", "daemonsets.json")}
KINDS = {"pods": "Pod", "secrets": "Secret", "configmaps": "ConfigMap",
         "replicasets": "ReplicaSet", "deployments": "Deployment",
         "statefulsets": "StatefulSet", "daemonsets": "DaemonSet", "namespaces": "Namespace"}
# A watch's longest wait between two looks at its stop conditions (a drop, its end).
WATCH_TICK = 0.5

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
    """The objects served, keyed by (resource, namespace, name), and the log of their changes
    that watches replay; one condition (and its lock) for all."""

    def __init__(self, fixtures):
        self.lock = threading.Condition()
        self.objects = {}
        self.version = 1000
        # (resourceVersion, resource, namespace, type, object) of every change since start.
        self.events = []
        # Watches from a resourceVersion below this are refused with 410 ("event" or
        # "status": an ERROR event, or an HTTP 410 answer).
        self.compacted = 0
        self.compact_mode = "event"
        # Bumped by the controls; each open watch acts on a change it has not seen.
        self.bookmarks = 0
        self.drops = 0
        self.expiries = 0
        self.malformed = 0
        self.open_watches = 0
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

    def record_change(self, resource, ns, kind, obj):
        """Logs a change for the watches (the lock held) and wakes them."""
        self.events.append((int(obj["metadata"]["resourceVersion"]), resource, ns, kind,
                            copy.deepcopy(obj)))
        self.lock.notify_all()


def api_version(resource):
    return "apps/v1" if SERVED[resource][0] == "apps" else "v1"


def served_object(resource, obj):
    """An object as the API returns it on its own: with kind and apiVersion."""
    item = copy.deepcopy(obj)
    item.setdefault("kind", KINDS[resource])
    item.setdefault("apiVersion", api_version(resource))
    return item


class Handler(BaseHTTPRequestHandler):
    """One request: discovery, a served object, a watch, or the /_fake/ control path."""

    server_version = "fake-apiserver"
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as Go's net/http (the real API server) sets it: without it, an answer's
    # head and body are two segments, and the second waits out the client's delayed ACK.
    disable_nagle_algorithm = True

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

    def user(self):
        """The authenticated user, or None: a bearer token of the tokens file, else the CN of
        a verified client certificate. Without --tls-dir nobody needs to authenticate."""
        srv = self.server
        if not srv.tls:
            return srv.user
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            token = auth[len("Bearer "):].strip()
            return srv.tokens().get(token)
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def handle_request(self, method):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        timeout = query.get("timeout", ["-"])[0]
        body = self.read_body()
        srv = self.server
        if url.path.startswith("/_fake/") and (srv.control is None or self.server is srv.control):
            return self.control(method, url.path, body)
        if srv.control is not None and self.server is srv.control:
            return self.send_json(404, status(404, "NotFound", "controls only here"))
        if url.path in srv.hang:
            time.sleep(HANG_SECONDS)
        user = self.user()
        if srv.tls and user is None:
            srv.record("-", url.path, "-", "-", 401, timeout)
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        if url.path in DISCOVERY and method == "GET":
            srv.record("-", url.path, "-", "-", 200, timeout, user=user)
            return self.send_json(200, DISCOVERY[url.path])
        match = PATH_RE.match(url.path)
        if not match:
            srv.record("-", url.path, "-", "-", 404, timeout)
            return self.send_json(404, status(404, "NotFound", "the server could not find the requested resource"))
        group = match.group("group") or ""
        ns, resource, name = match.group("ns"), match.group("resource"), match.group("name")
        if resource == "namespaces" and ns is None and name:
            ns = name  # RBAC sees a namespace's own name as its namespace
        watching = query.get("watch", [""])[0] in ("1", "true")
        if method == "GET":
            verb = "get" if name else ("watch" if watching else "list")
        else:
            verb = {"PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}[method]
        patch_text = "-"
        if method == "PATCH":
            try:
                patch_text = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
            except ValueError:
                patch_text = body.decode(errors="replace")

        def answer(code, payload):
            srv.record(verb, resource, ns or "-", name or "-", code, timeout, patch_text, user)
            return self.send_json(code, payload)

        denied = srv.denied(verb, group, resource, name, ns)
        if denied:
            what = f'{resource} "{name}"' if name else resource
            scope = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            return answer(403, status(403, "Forbidden", (
                f'{what} is forbidden: User "{self.user()}" cannot {verb} resource "{resource}" '
                f'in API group "{group}"{scope}'),
                {"name": name or "", "group": group, "kind": resource}))
        if resource == "namespaces" and verb == "get":
            # kubectl asks for the namespace after a 404 in it, to say which is missing.
            if any(key[1] == name for key in srv.store.objects):
                return answer(200, {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name}, "status": {"phase": "Active"}})
            return answer(404, status(404, "NotFound", f'namespaces "{name}" not found',
                                      {"name": name, "kind": "namespaces"}))
        if resource not in SERVED or SERVED[resource][0] != group or (ns is None and name):
            return answer(405, status(405, "MethodNotAllowed", "not served by the fake"))

        store = srv.store
        if verb == "watch":
            return self.watch(resource, ns, query, answer, user)
        with store.lock:
            if not name:
                if verb != "list":
                    return answer(405, status(405, "MethodNotAllowed", f"{verb} is not served by the fake"))
                items = []
                for (res, item_ns, _), obj in sorted(store.objects.items()):
                    if res == resource and (ns is None or item_ns == ns):
                        item = copy.deepcopy(obj)
                        item.pop("kind", None)
                        item.pop("apiVersion", None)
                        items.append(item)
                meta = {"resourceVersion": str(store.version)}
                limit = int(query.get("limit", ["0"])[0] or 0)
                start = int(query.get("continue", ["0"])[0] or 0)
                if limit > 0:
                    if start + limit < len(items):
                        meta["continue"] = str(start + limit)
                    items = items[start:start + limit]
                return answer(200, {"kind": KINDS[resource] + "List",
                                    "apiVersion": api_version(resource),
                                    "metadata": meta, "items": items})
            key = (resource, ns, name)
            obj = store.objects.get(key)
            if obj is None or f"{resource}:{name}" in srv.vanish:
                return answer(404, status(404, "NotFound", f'{resource} "{name}" not found',
                                          {"name": name, "group": group, "kind": resource}))
            if verb == "get":
                return answer(200, served_object(resource, obj))
            if verb == "patch":
                kind = (self.headers.get("Content-Type") or "").split(";")[0]
                if kind not in ("application/merge-patch+json",
                                "application/strategic-merge-patch+json"):
                    return answer(415, status(415, "UnsupportedMediaType", f"the fake does not apply {kind}"))
                try:
                    patch = json.loads(body)
                except ValueError as err:
                    return answer(400, status(400, "BadRequest", f"invalid JSON patch: {err}"))
                wanted = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
                if wanted is not None and wanted != obj["metadata"].get("resourceVersion"):
                    return answer(409, status(409, "Conflict", (
                        f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
                        "modified; please apply your changes to the latest version and try again"),
                        {"name": name, "group": group, "kind": resource}))
                patched = merge_patch(obj, patch)
                patched["metadata"]["resourceVersion"] = store.next_version()
                store.objects[key] = patched
                store.record_change(resource, ns, "MODIFIED", patched)
                return answer(200, served_object(resource, patched))
            return answer(405, status(405, "MethodNotAllowed", f"{verb} is not served by the fake"))

    def watch(self, resource, ns, query, answer, user):
        """Streams the changes of RESOURCE (in NS, or everywhere) after the watch's
        resourceVersion, until its timeoutSeconds, a drop or an expiry."""
        srv, store = self.server, self.server.store
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        seconds = float(query.get("timeoutSeconds", ["1800"])[0] or 1800)
        if srv.max_watch_seconds is not None:
            seconds = min(seconds, srv.max_watch_seconds)
        bookmarks_wanted = query.get("allowWatchBookmarks", [""])[0] in ("1", "true")
        with store.lock:
            if since == 0:
                since = store.version
            if since < store.compacted and store.compact_mode == "status":
                return answer(410, status(410, "Expired", f"too old resource version: {since} ({store.compacted})"))
            srv.record("watch", resource, ns or "-", f"rv={since}", 200, str(int(seconds)) + "s",
                       user=user)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            store.open_watches += 1
            seen = (store.bookmarks, store.drops, store.expiries, store.malformed)
            expired = since < store.compacted
        deadline = time.monotonic() + seconds
        sent = since

        def chunk(data):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def event(kind, obj):
            chunk(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")

        try:
            if expired:
                event("ERROR", status(410, "Expired", f"too old resource version: {since} ({store.compacted})"))
                chunk(b"")
                return None
            while True:
                with store.lock:
                    pending = [e for e in store.events if e[0] > sent and e[1] == resource
                               and (ns is None or e[2] == ns)]
                    now = (store.bookmarks, store.drops, store.expiries, store.malformed)
                    left = deadline - time.monotonic()
                    if not pending and now == seen and left > 0:
                        store.lock.wait(min(left, WATCH_TICK))
                        continue
                    version = store.version
                for rv, _, _, kind, obj in pending:
                    event(kind, served_object(resource, obj))
                    sent = rv
                # In this order, so that what came before a drop or an expiry is sent first.
                if now[3] != seen[3]:
                    chunk(b"this is not JSON\n")
                    event("MODIFIED", {"kind": KINDS[resource], "metadata": {"name": 42}})
                if now[0] != seen[0] and bookmarks_wanted:
                    event("BOOKMARK", {"kind": KINDS[resource], "apiVersion": api_version(resource),
                                       "metadata": {"resourceVersion": str(version)}})
                    sent = max(sent, version)
                if now[2] != seen[2]:
                    event("ERROR", status(410, "Expired", "too old resource version"))
                    chunk(b"")
                    return None
                if now[1] != seen[1]:  # drop: cut the connection, no last chunk
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return None
                seen = now
                if time.monotonic() >= deadline:
                    chunk(b"")
                    return None
        except OSError:
            self.close_connection = True
            return None
        finally:
            with store.lock:
                store.open_watches -= 1

    def control(self, method, path, body):
        """POST /_fake/ACTION[/...]: see `ctl` in the module's help."""
        store = self.server.store
        parts = path.split("/")[2:]
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        with store.lock:
            if method != "POST" or not parts:
                return self.send_json(404, status(404, "NotFound", f"no control {method} {path}"))
            action = parts[0]
            if action == "bump" and len(parts) == 4:
                resource, ns, name = parts[1:]
                obj = store.objects.get((resource, ns, name))
                if obj is None:
                    return self.send_json(404, status(404, "NotFound", f"no {resource} {ns}/{name}"))
                obj["metadata"]["resourceVersion"] = store.next_version()
                store.record_change(resource, ns, "MODIFIED", obj)
                return self.send_json(200, obj)
            if action == "set-data" and len(parts) == 4:
                resource, ns, name = parts[1:]
                obj = store.objects.get((resource, ns, name))
                if obj is None:
                    return self.send_json(404, status(404, "NotFound", f"no {resource} {ns}/{name}"))
                for field in ("data", "binaryData"):
                    obj.pop(field, None)
                    if field in payload.get("object", {}):
                        obj[field] = payload["object"][field]
                rv = payload.get("resourceVersion")
                if rv:
                    store.version = max(store.version, int(rv))
                obj["metadata"]["resourceVersion"] = str(rv) if rv else store.next_version()
                store.record_change(resource, ns, "MODIFIED", obj)
                return self.send_json(200, obj)
            if action == "create" and len(parts) == 3:
                resource, ns = parts[1:]
                obj = payload.get("object", {})
                obj.setdefault("metadata", {})["namespace"] = ns
                obj["metadata"]["resourceVersion"] = store.next_version()
                store.objects[(resource, ns, obj["metadata"]["name"])] = obj
                store.record_change(resource, ns, "ADDED", obj)
                return self.send_json(200, obj)
            if action == "delete" and len(parts) == 4:
                resource, ns, name = parts[1:]
                obj = store.objects.pop((resource, ns, name), None)
                if obj is None:
                    return self.send_json(404, status(404, "NotFound", f"no {resource} {ns}/{name}"))
                obj["metadata"]["resourceVersion"] = store.next_version()
                store.record_change(resource, ns, "DELETED", obj)
                return self.send_json(200, obj)
            counters = {"bookmark": "bookmarks", "drop": "drops", "expire": "expiries",
                        "malformed": "malformed"}
            if action in counters:
                setattr(store, counters[action], getattr(store, counters[action]) + 1)
                store.lock.notify_all()
                return self.send_json(200, {"open": store.open_watches})
            if action in ("compact", "compact-status"):
                store.compacted = store.version + 1
                store.compact_mode = "status" if action == "compact-status" else "event"
                return self.send_json(200, {"compacted": store.compacted})
            if action == "deny":
                self.server.deny = [d.split(":") for d in payload.get("rules", [])]
                return self.send_json(200, {"deny": payload.get("rules", [])})
            if action == "watches":
                return self.send_json(200, {"open": store.open_watches})
            return self.send_json(404, status(404, "NotFound", f"no control {method} {path}"))


class ControlServer(ThreadingHTTPServer):
    """The /_fake/ controls on a plain-HTTP port of their own (with --control-port-file)."""

    daemon_threads = True

    def __init__(self, main):
        super().__init__(("127.0.0.1", 0), Handler)
        self.store = main.store
        self.main = main
        self.control = self

    @property
    def deny(self):
        return self.main.deny

    @deny.setter
    def deny(self, rules):
        self.main.deny = rules


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many watches at once (3 resources for each namespace, and their replacements).
    request_queue_size = 64

    def __init__(self, args):
        super().__init__(("127.0.0.1", args.port), Handler)
        self.store = Store(args.fixtures)
        self.store.version = max(self.store.version, args.first_version)
        self.user = args.user
        self.rules = None
        if args.role:
            roles = [o for o in load_objects(args.role) if o.get("kind") in ("Role", "ClusterRole")]
            self.rules = (roles[0].get("rules") or []) if roles else []
        self.cluster_role = args.cluster_role
        self.deny = [d.split(":") for d in args.deny]
        self.vanish = set(args.vanish)
        self.hang = set(args.hang)
        self.log_path = args.log
        self.log_lock = threading.Lock()
        self.max_watch_seconds = args.max_watch_seconds
        self.control = None
        self.tls = bool(args.tls_dir)
        self.tokens_path = args.tokens
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(os.path.join(args.tls_dir, "server.crt"),
                                os.path.join(args.tls_dir, "server.key"))
            ctx.load_verify_locations(os.path.join(args.tls_dir, "ca.crt"))
            ctx.verify_mode = ssl.CERT_OPTIONAL
            # The handshake in the request's own thread, not in the accept loop.
            self.socket = ctx.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    def tokens(self):
        """TOKEN -> USER from the tokens file, as it is now."""
        if not self.tokens_path:
            return {}
        try:
            with open(self.tokens_path, encoding="utf-8") as f:
                pairs = [line.split() for line in f if line.strip()]
        except OSError:
            return {}
        return {p[0]: (p[1] if len(p) > 1 else "token-user") for p in pairs}

    def denied(self, verb, group, resource, name, ns=None):
        for rule in self.deny:
            if rule[0] == verb and rule[1] == resource and (len(rule) < 3 or rule[2] == name):
                return True
        if self.rules is None:
            return False
        if ns is None and resource != "namespaces" and not self.cluster_role:
            return True  # a Role grants nothing at the cluster scope
        for rule in self.rules:
            if (group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
                    and verb in rule.get("verbs", [])
                    and (not rule.get("resourceNames") or name in rule["resourceNames"])):
                return False
        return True

    def record(self, verb, resource, ns, name, code, timeout, body="-", user=None):
        # With --tls-dir, the user who asked, last (after the body).
        who = f" {user or '-'}" if self.tls else ""
        with self.log_lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{verb} {resource} {ns} {name} {code} {timeout} {body}{who}\n")


def write_port(path, port):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def serve(args):
    server = Server(args)
    if args.control_port_file:
        control = ControlServer(server)
        server.control = control
        threading.Thread(target=control.serve_forever, daemon=True).start()
        write_port(args.control_port_file, control.server_address[1])
    write_port(args.port_file, server.server_address[1])
    server.serve_forever()


def ctl(port_file, action, rest):
    with open(port_file, encoding="utf-8") as f:
        port = f.read().strip()
    paths = {
        "bump-secret": (2, lambda a: (f"bump/secrets/{a[0]}/{a[1]}", None)),
        "bump-configmap": (2, lambda a: (f"bump/configmaps/{a[0]}/{a[1]}", None)),
        "bump": (3, lambda a: (f"bump/{a[0]}/{a[1]}/{a[2]}", None)),
        "set-data": (4, lambda a: (f"set-data/{a[0]}/{a[1]}/{a[2]}",
                                   {"object": json.loads(a[3]),
                                    "resourceVersion": a[4] if len(a) > 4 else None})),
        "create": (3, lambda a: (f"create/{a[0]}/{a[1]}", {"object": json.loads(a[2])})),
        "delete": (3, lambda a: (f"delete/{a[0]}/{a[1]}/{a[2]}", None)),
        "deny": (0, lambda a: ("deny", {"rules": list(a)})),
    }
    for simple in ("bookmark", "drop", "expire", "compact", "compact-status", "malformed", "watches"):
        paths[simple] = (0, lambda a, simple=simple: (simple, None))
    if action not in paths or len(rest) < paths[action][0]:
        print(f"fake_apiserver.py: unknown control or missing arguments: {action} {rest}", file=sys.stderr)
        return 2
    path, payload = paths[action][1](rest)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_fake/{path}",
        data=json.dumps(payload).encode() if payload is not None else b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    if action in ("bump-secret", "bump-configmap", "bump", "set-data", "create"):
        print(answer["metadata"]["resourceVersion"])
    elif action == "watches":
        print(answer["open"])
    return 0


def certs(out_dir):
    """A CA, a server certificate and two client certificates, with openssl."""
    os.makedirs(out_dir, exist_ok=True)

    def run(*cmd, stdin=None):
        subprocess.run(["openssl", *cmd], cwd=out_dir, check=True, input=stdin,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ec_key(name):
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")

    def sign(name, subject, extensions):
        run("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr")
        with open(os.path.join(out_dir, f"{name}.ext"), "w", encoding="utf-8") as f:
            f.write(extensions)
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
            "-out", f"{name}.crt")

    ec_key("ca")
    run("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=fake-apiserver-ca", "-days", "2",
        "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt")
    ec_key("server")
    sign("server", "/CN=fake-apiserver",
         "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
         "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    client_ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
    ec_key("client-ec")
    sign("client-ec", "/O=system:masters/CN=test-user", client_ext)
    run("genrsa", "-traditional", "-out", "client-rsa.key", "2048")
    sign("client-rsa", "/O=system:masters/CN=test-user", client_ext)
    for name in os.listdir(out_dir):
        if name.endswith((".csr", ".ext", ".srl")):
            os.remove(os.path.join(out_dir, name))
    return 0


def role_verbs(path):
    roles = [o for o in load_objects(path) if o.get("kind") in ("Role", "ClusterRole")]
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
    p.add_argument("--tls-dir")
    p.add_argument("--tokens")
    p.add_argument("--control-port-file")
    p.add_argument("--max-watch-seconds", type=float)
    p.add_argument("--cluster-role", action="store_true")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--first-version", type=int, default=0)
    p = sub.add_parser("ctl")
    p.add_argument("port_file")
    p.add_argument("action")
    p.add_argument("rest", nargs="*")
    p = sub.add_parser("certs")
    p.add_argument("out_dir")
    p = sub.add_parser("role-verbs")
    p.add_argument("role_json")
    p = sub.add_parser("from-manifests")
    p.add_argument("list_json")
    p.add_argument("out_dir")
    args = parser.parse_args(argv[1:])
    if args.command == "serve":
        return serve(args)
    if args.command == "ctl":
        return ctl(args.port_file, args.action, args.rest)
    if args.command == "certs":
        return certs(args.out_dir)
    if args.command == "role-verbs":
        return role_verbs(args.role_json)
    return from_manifests(args.list_json, args.out_dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
