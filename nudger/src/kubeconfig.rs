//! Where the API server is and how to authenticate to it: the pod's ServiceAccount, or a
//! kubeconfig file (YAML or JSON) outside a cluster. Produces plain data (`Connection`);
//! the TLS and HTTP side is `client.rs`.
//!
//! YAML is read with yaml-rust2 (without its encoding feature), turned into a JSON value
//! and read like one: about 100 kB of binary, against about 120 kB for serde_yaml (whose
//! libyaml translation is also deprecated) — measured on a probe with the release profile.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where a ServiceAccount is mounted in a pod.
pub(crate) const SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// PEM bytes and where they came from (for error messages: file and field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pem {
    pub(crate) bytes: Vec<u8>,
    pub(crate) origin: String,
}

/// How requests authenticate, besides a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Nothing (a client certificate alone, or an open test server).
    Anonymous,
    /// A bearer token given inline.
    Token(String),
    /// A bearer token read from a file, re-read when the file changes (bound ServiceAccount
    /// tokens rotate) and after a 401.
    TokenFile(PathBuf),
    /// HTTP basic authentication (`username`/`password` in a kubeconfig user).
    Basic { username: String, password: String },
    /// An exec credential plugin: its command, arguments and extra environment, run again
    /// when its token expires or is refused.
    Exec(ExecPlugin),
}

/// `users[].user.exec` of a kubeconfig (client.authentication.k8s.io).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecPlugin {
    pub(crate) command: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) api_version: String,
}

/// Everything needed to talk to one API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connection {
    /// `https://host:port[/prefix]`, without a trailing slash.
    pub(crate) server: String,
    /// The CA bundle that signs the server's certificate; `None`: the system has none here
    /// (a FROM-scratch image), so the server must be `insecure` or this must be given.
    pub(crate) ca: Option<Pem>,
    /// `insecure-skip-tls-verify: true`.
    pub(crate) insecure: bool,
    /// Client certificate chain and key.
    pub(crate) client_cert: Option<(Pem, Pem)>,
    pub(crate) auth: Auth,
    /// The default namespace: the pod's own, or the context's.
    pub(crate) namespace: Option<String>,
    /// What this came from, for the log: `ServiceAccount (DIR)` or `kubeconfig FILE,
    /// context NAME`.
    pub(crate) source: String,
}

/// A kubeconfig or ServiceAccount that cannot be used; one line naming file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KubeconfigError {
    pub(crate) message: String,
    /// A mistake on the command line (an unknown `--context`, a missing `--kubeconfig`
    /// file): exit 2; anything else exits 1.
    pub(crate) usage: bool,
}

impl fmt::Display for KubeconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn runtime(message: String) -> KubeconfigError {
    KubeconfigError {
        message,
        usage: false,
    }
}

/// What the process environment says, gathered by main (plain data, testable).
#[derive(Debug, Clone, Default)]
pub(crate) struct Environment {
    pub(crate) service_host: Option<String>,
    pub(crate) service_port: Option<String>,
    pub(crate) kubeconfig: Option<String>,
    pub(crate) home: Option<String>,
    pub(crate) serviceaccount_dir: Option<String>,
}

/// Picks and reads the connection: `--kubeconfig`, else in a pod its ServiceAccount, else
/// `KUBECONFIG` (its first file), else `~/.kube/config`.
pub(crate) fn load(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    env: &Environment,
) -> Result<Connection, KubeconfigError> {
    if let Some(path) = kubeconfig {
        return from_file(path, context, true);
    }
    if let (Some(host), Some(port)) = (&env.service_host, &env.service_port) {
        if !host.is_empty() && !port.is_empty() && context.is_none() {
            let dir = env
                .serviceaccount_dir
                .clone()
                .unwrap_or_else(|| SERVICEACCOUNT_DIR.to_string());
            return in_cluster(host, port, Path::new(&dir));
        }
    }
    if let Some(list) = env.kubeconfig.as_deref().filter(|l| !l.is_empty()) {
        // Only the first file of the list is read (kubectl merges them all).
        let first = list.split(':').find(|p| !p.is_empty()).unwrap_or(list);
        return from_file(Path::new(first), context, false);
    }
    let Some(home) = env.home.as_deref().filter(|h| !h.is_empty()) else {
        return Err(KubeconfigError {
            message: "no cluster to talk to: not in a pod (KUBERNETES_SERVICE_HOST unset), \
                      no --kubeconfig, no KUBECONFIG and no HOME"
                .into(),
            usage: true,
        });
    };
    from_file(&Path::new(home).join(".kube/config"), context, false)
}

/// The ServiceAccount of a pod: `KUBERNETES_SERVICE_HOST`/`_PORT`, the token (re-read as it
/// rotates), the mount's `ca.crt` and `namespace`.
pub(crate) fn in_cluster(
    host: &str,
    port: &str,
    dir: &Path,
) -> Result<Connection, KubeconfigError> {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]") // IPv6
    } else {
        host.to_string()
    };
    let ca_path = dir.join("ca.crt");
    let ca = std::fs::read(&ca_path).map_err(|e| {
        runtime(format!(
            "cannot read {}: {}",
            ca_path.display(),
            io_message(&e)
        ))
    })?;
    let token = dir.join("token");
    if let Err(e) = std::fs::metadata(&token) {
        return Err(runtime(format!(
            "cannot read {}: {}",
            token.display(),
            io_message(&e)
        )));
    }
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(Connection {
        server: format!("https://{host}:{port}"),
        ca: Some(Pem {
            bytes: ca,
            origin: ca_path.display().to_string(),
        }),
        insecure: false,
        client_cert: None,
        auth: Auth::TokenFile(token),
        namespace,
        source: format!("ServiceAccount ({})", dir.display()),
    })
}

/// Reads a kubeconfig file. `named`: the path came from `--kubeconfig` (a missing file is a
/// usage error then).
pub(crate) fn from_file(
    path: &Path,
    context: Option<&str>,
    named: bool,
) -> Result<Connection, KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| KubeconfigError {
        message: format!(
            "cannot read kubeconfig {}: {}",
            path.display(),
            io_message(&e)
        ),
        usage: named && e.kind() == std::io::ErrorKind::NotFound,
    })?;
    let doc = parse_document(&text)
        .map_err(|e| runtime(format!("kubeconfig {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    from_value(&doc, context, dir)
        .map_err(|mut e| {
            e.message = format!("kubeconfig {}: {}", path.display(), e.message);
            e
        })
        .map(|mut c| {
            c.source = format!("kubeconfig {}, {}", path.display(), c.source);
            c
        })
}

/// A kubeconfig's text as a JSON value: JSON as it is, anything else as YAML.
pub(crate) fn parse_document(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"));
    }
    let docs =
        yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    Ok(docs.first().map_or(Value::Null, yaml_to_json))
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(r.clone()), Value::Number),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// The entry named `name` of the list `list` (clusters, users, contexts), and its inner
/// object (`cluster`, `user`, `context`).
fn entry<'a>(doc: &'a Value, list: &str, inner: &str, name: &str) -> Option<&'a Value> {
    doc.get(list)?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .map(|e| e.get(inner).unwrap_or(&Value::Null))
}

fn names(doc: &Value, list: &str) -> String {
    let all: Vec<&str> = doc
        .get(list)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|e| e.get("name")?.as_str()).collect())
        .unwrap_or_default();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

fn string_field(obj: &Value, field: &str, what: &str) -> Result<Option<String>, KubeconfigError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(runtime(format!("{what}.{field} is not a string"))),
    }
}

/// The connection a parsed kubeconfig describes for `context` (else its current-context);
/// relative file names are relative to `dir`, the kubeconfig's directory.
pub(crate) fn from_value(
    doc: &Value,
    context: Option<&str>,
    dir: &Path,
) -> Result<Connection, KubeconfigError> {
    if !doc.is_object() {
        return Err(runtime(
            "not a kubeconfig (expected a mapping with clusters, users and contexts)".into(),
        ));
    }
    let (ctx_name, from_flag) = match context {
        Some(c) => (c.to_string(), true),
        None => match doc.get("current-context").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => (c.to_string(), false),
            _ => {
                return Err(KubeconfigError {
                    message: "no current-context: name one with --context".into(),
                    usage: true,
                })
            }
        },
    };
    let ctx = entry(doc, "contexts", "context", &ctx_name).ok_or_else(|| KubeconfigError {
        message: format!(
            "context '{ctx_name}' not found (contexts: {})",
            names(doc, "contexts")
        ),
        usage: from_flag,
    })?;
    let what = format!("contexts[{ctx_name}].context");
    let cluster_name = string_field(ctx, "cluster", &what)?
        .ok_or_else(|| runtime(format!("{what}.cluster is missing")))?;
    let user_name = string_field(ctx, "user", &what)?;
    let namespace = string_field(ctx, "namespace", &what)?.filter(|n| !n.is_empty());

    let cluster = entry(doc, "clusters", "cluster", &cluster_name).ok_or_else(|| {
        runtime(format!(
            "cluster '{cluster_name}' of context '{ctx_name}' not found (clusters: {})",
            names(doc, "clusters")
        ))
    })?;
    let what = format!("clusters[{cluster_name}].cluster");
    let server = string_field(cluster, "server", &what)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| runtime(format!("{what}.server is missing")))?;
    if !server.starts_with("https://") && !server.starts_with("http://") {
        return Err(runtime(format!(
            "{what}.server '{server}' is not an http:// or https:// URL"
        )));
    }
    let insecure = match cluster.get("insecure-skip-tls-verify") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(runtime(format!(
                "{what}.insecure-skip-tls-verify is not true or false"
            )))
        }
    };
    let ca = pem_field(cluster, "certificate-authority", dir, &what)?;

    let mut auth = Auth::Anonymous;
    let mut client_cert = None;
    if let Some(user_name) = user_name.filter(|u| !u.is_empty()) {
        let user = entry(doc, "users", "user", &user_name).ok_or_else(|| {
            runtime(format!(
                "user '{user_name}' of context '{ctx_name}' not found (users: {})",
                names(doc, "users")
            ))
        })?;
        let what = format!("users[{user_name}].user");
        let cert = pem_field(user, "client-certificate", dir, &what)?;
        let key = pem_field(user, "client-key", dir, &what)?;
        client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(runtime(format!(
                    "{what}.client-key(-data) is missing: a client certificate needs its key"
                )))
            }
            (None, Some(_)) => {
                return Err(runtime(format!(
                "{what}.client-certificate(-data) is missing: a client key needs its certificate"
            )))
            }
        };
        auth = user_auth(user, dir, &what)?;
    }
    Ok(Connection {
        server: server.trim_end_matches('/').to_string(),
        ca,
        insecure,
        client_cert,
        auth,
        namespace,
        source: format!("context {ctx_name}"),
    })
}

fn user_auth(user: &Value, dir: &Path, what: &str) -> Result<Auth, KubeconfigError> {
    if let Some(token) = string_field(user, "token", what)?.filter(|t| !t.is_empty()) {
        return Ok(Auth::Token(token));
    }
    if let Some(file) = string_field(user, "tokenFile", what)?.filter(|t| !t.is_empty()) {
        let path = resolve(dir, &file);
        if let Err(e) = std::fs::metadata(&path) {
            return Err(runtime(format!(
                "{what}.tokenFile {}: {}",
                path.display(),
                io_message(&e)
            )));
        }
        return Ok(Auth::TokenFile(path));
    }
    if let Some(exec) = user.get("exec").filter(|e| !e.is_null()) {
        let what = format!("{what}.exec");
        let command = string_field(exec, "command", &what)?
            .filter(|c| !c.is_empty())
            .ok_or_else(|| runtime(format!("{what}.command is missing")))?;
        let args = match exec.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| runtime(format!("{what}.args must be a list of strings")))?,
            Some(_) => return Err(runtime(format!("{what}.args must be a list of strings"))),
        };
        let mut env = Vec::new();
        if let Some(list) = exec.get("env").and_then(Value::as_array) {
            for e in list {
                match (
                    e.get("name").and_then(Value::as_str),
                    e.get("value").and_then(Value::as_str),
                ) {
                    (Some(n), Some(v)) => env.push((n.to_string(), v.to_string())),
                    _ => {
                        return Err(runtime(format!(
                            "{what}.env entries need a name and a value"
                        )))
                    }
                }
            }
        }
        let api_version = string_field(exec, "apiVersion", &what)?
            .unwrap_or_else(|| "client.authentication.k8s.io/v1".into());
        return Ok(Auth::Exec(ExecPlugin {
            command,
            args,
            env,
            api_version,
        }));
    }
    if let Some(username) = string_field(user, "username", what)?.filter(|u| !u.is_empty()) {
        let password = string_field(user, "password", what)?.unwrap_or_default();
        return Ok(Auth::Basic { username, password });
    }
    if user.get("auth-provider").is_some_and(|a| !a.is_null()) {
        return Err(runtime(format!(
            "{what}.auth-provider is not supported (use a token, a client certificate or an exec plugin)"
        )));
    }
    Ok(Auth::Anonymous)
}

/// `FIELD` (a file name) or `FIELD-data` (base64 PEM) of `obj`: the PEM bytes, if any.
fn pem_field(
    obj: &Value,
    field: &str,
    dir: &Path,
    what: &str,
) -> Result<Option<Pem>, KubeconfigError> {
    let data_field = format!("{field}-data");
    if let Some(data) = string_field(obj, &data_field, what)?.filter(|d| !d.is_empty()) {
        let bytes = decode_base64(&data)
            .ok_or_else(|| runtime(format!("{what}.{data_field} is not base64")))?;
        return Ok(Some(Pem {
            bytes,
            origin: format!("{what}.{data_field}"),
        }));
    }
    if let Some(file) = string_field(obj, field, what)?.filter(|f| !f.is_empty()) {
        let path = resolve(dir, &file);
        let bytes = std::fs::read(&path).map_err(|e| {
            runtime(format!(
                "{what}.{field} {}: {}",
                path.display(),
                io_message(&e)
            ))
        })?;
        return Ok(Some(Pem {
            bytes,
            origin: format!("{what}.{field} {}", path.display()),
        }));
    }
    Ok(None)
}

fn resolve(dir: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Standard base64 (with or without padding; whitespace ignored), as kubeconfig `-data`
/// fields hold it. `None` when it is not base64.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        if padding > 0 {
            return None; // data after padding
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 || padding > 2 {
        return None;
    }
    Some(out)
}

/// An I/O error without Rust's "(os error N)" suffix, lowercase.
pub(crate) fn io_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64_PEM: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="; // "-----BEGIN CERTIFICATE-----\n"

    fn doc(yaml: &str) -> Value {
        parse_document(yaml).unwrap()
    }

    const K3S: &str = r#"
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
- name: shop
  context: {cluster: default, user: token-user, namespace: shop}
current-context: default
users:
- name: default
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    client-key-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
- name: token-user
  user:
    token: abc.def
"#;

    #[test]
    fn k3s_style_client_certificate() {
        let c = from_value(&doc(K3S), None, Path::new("/x")).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        assert_eq!(c.ca.unwrap().bytes, b"-----BEGIN CERTIFICATE-----\n");
        let (cert, key) = c.client_cert.unwrap();
        assert_eq!(cert.origin, "users[default].user.client-certificate-data");
        assert_eq!(key.bytes, b"-----BEGIN CERTIFICATE-----\n");
        assert_eq!(c.auth, Auth::Anonymous);
        assert_eq!(c.namespace, None);
        assert!(!c.insecure);
    }

    #[test]
    fn context_flag_token_and_namespace() {
        let c = from_value(&doc(K3S), Some("shop"), Path::new("/x")).unwrap();
        assert_eq!(c.auth, Auth::Token("abc.def".into()));
        assert_eq!(c.namespace.as_deref(), Some("shop"));
        assert_eq!(c.source, "context shop");
    }

    #[test]
    fn json_kubeconfig() {
        let text = r#"{"clusters":[{"name":"c","cluster":{"server":"https://k:6443/","insecure-skip-tls-verify":true}}],
            "contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],"current-context":"x",
            "users":[{"name":"u","user":{"username":"admin","password":"pw"}}]}"#;
        let c = from_value(&parse_document(text).unwrap(), None, Path::new("/")).unwrap();
        assert_eq!(c.server, "https://k:6443");
        assert!(c.insecure);
        assert_eq!(
            c.auth,
            Auth::Basic {
                username: "admin".into(),
                password: "pw".into()
            }
        );
    }

    #[test]
    fn exec_plugin() {
        let text = "clusters: [{name: c, cluster: {server: 'https://k'}}]\n\
                    contexts: [{name: x, context: {cluster: c, user: u}}]\n\
                    current-context: x\n\
                    users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      args: [eks, get-token]\n      env: [{name: AWS_PROFILE, value: dev}]\n";
        let c = from_value(&doc(text), None, Path::new("/")).unwrap();
        assert_eq!(
            c.auth,
            Auth::Exec(ExecPlugin {
                command: "aws".into(),
                args: vec!["eks".into(), "get-token".into()],
                env: vec![("AWS_PROFILE".into(), "dev".into())],
                api_version: "client.authentication.k8s.io/v1beta1".into(),
            })
        );
    }

    #[test]
    fn errors_name_the_field() {
        let bad_ctx = from_value(&doc(K3S), Some("nope"), Path::new("/")).unwrap_err();
        assert_eq!(
            bad_ctx.message,
            "context 'nope' not found (contexts: default, shop)"
        );
        assert!(bad_ctx.usage);
        let no_server = doc("clusters: [{name: c, cluster: {}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n");
        assert_eq!(
            from_value(&no_server, None, Path::new("/"))
                .unwrap_err()
                .message,
            "clusters[c].cluster.server is missing"
        );
        let bad_b64 = K3S.replace(
            &format!("client-key-data: {B64_PEM}"),
            "client-key-data: not*base64",
        );
        assert_eq!(
            from_value(&doc(&bad_b64), None, Path::new("/"))
                .unwrap_err()
                .message,
            "users[default].user.client-key-data is not base64"
        );
        let no_key = K3S.replace(&format!("client-key-data: {B64_PEM}"), "");
        assert!(from_value(&doc(&no_key), None, Path::new("/"))
            .unwrap_err()
            .message
            .starts_with("users[default].user.client-key(-data) is missing"));
        let missing_file = K3S.replace(
            &format!("certificate-authority-data: {B64_PEM}"),
            "certificate-authority: ca.pem",
        );
        assert_eq!(
            from_value(&doc(&missing_file), None, Path::new("/nonexistent")).unwrap_err().message,
            "clusters[default].cluster.certificate-authority /nonexistent/ca.pem: no such file or directory"
        );
        let no_current = doc("clusters: []\ncontexts: []\n");
        let e = from_value(&no_current, None, Path::new("/")).unwrap_err();
        assert!(e.usage && e.message.contains("no current-context"));
        assert!(parse_document("a: [")
            .unwrap_err()
            .starts_with("invalid YAML"));
    }

    #[test]
    fn environment_picks_in_order() {
        let dir = std::env::temp_dir().join(format!("nudger-kc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), "ca").unwrap();
        std::fs::write(dir.join("token"), "t").unwrap();
        std::fs::write(dir.join("namespace"), "shop\n").unwrap();
        std::fs::write(dir.join("config"), K3S).unwrap();
        let env = Environment {
            service_host: Some("10.43.0.1".into()),
            service_port: Some("443".into()),
            kubeconfig: Some(format!("{}:/other", dir.join("config").display())),
            home: None,
            serviceaccount_dir: Some(dir.display().to_string()),
        };
        let c = load(None, None, &env).unwrap();
        assert_eq!(c.server, "https://10.43.0.1:443");
        assert_eq!(c.namespace.as_deref(), Some("shop"));
        assert_eq!(c.auth, Auth::TokenFile(dir.join("token")));
        // --kubeconfig wins over the pod's ServiceAccount; KUBECONFIG's first file is read.
        let c = load(Some(&dir.join("config")), None, &env).unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        let outside = Environment {
            service_host: None,
            ..env.clone()
        };
        let c = load(None, Some("shop"), &outside).unwrap();
        assert!(c.source.ends_with("context shop"));
        let ipv6 = in_cluster("fd00::1", "443", &dir).unwrap();
        assert_eq!(ipv6.server, "https://[fd00::1]:443");
        let e = load(Some(&dir.join("missing")), None, &env).unwrap_err();
        assert!(e.usage, "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("aGVsbG8=x").is_none());
        assert!(decode_base64("a*").is_none());
    }
}
