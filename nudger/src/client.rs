//! The Kubernetes API client: blocking HTTP/1.1 over rustls (ureq), with the credentials
//! of a `Connection` — a bearer token (a token file is re-read when it changes, and after a
//! 401), a client certificate, basic auth, or an exec plugin.
//!
//! No read timeout fires while a watch is idle: a watch's body may take as long as the
//! server's `timeoutSeconds` plus a margin, which only a dead server ever reaches.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use ureq::http;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};
use ureq::RequestExt;

use crate::clock;
use crate::kubeconfig::{io_message, Auth, Connection, ExecPlugin, Pem};

/// Bound on a whole list page, get or patch request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the wait for a watch's response head.
const WATCH_HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest line of a watch stream read (one event: an object of at most ~1.5 MB in etcd,
/// as JSON).
const MAX_EVENT_BYTES: u64 = 16 << 20;
/// The most of an error answer read for its message.
const MAX_ERROR_BYTES: u64 = 64 << 10;

/// A request the API server refused, or that got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// An answer with an error status, and the `Status` object's reason and message.
    Status {
        code: u16,
        reason: String,
        message: String,
    },
    /// No answer: connection refused, TLS failure, timeout, a stream cut short.
    Transport(String),
    /// An answer that is not what the API sends.
    Decode(String),
}

impl ApiError {
    /// The HTTP status, if the server answered.
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The label of `hello_path_nudger_api_errors_total{code=...}`.
    pub(crate) fn code_label(&self) -> String {
        match self {
            ApiError::Status { code, .. } => code.to_string(),
            ApiError::Transport(_) => "transport".into(),
            ApiError::Decode(_) => "decode".into(),
        }
    }
}

impl ApiError {
    /// One line for the log and /readyz: what failed, and for a refusal the RBAC rule that
    /// is missing, e.g. `forbidden: cannot list secrets in namespace shop (RBAC: add
    /// list,watch on secrets)`. `resource` as RBAC names it (`replicasets.apps`).
    pub(crate) fn explain(
        &self,
        verb: &str,
        resource: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> String {
        let what = match name {
            Some(n) => format!("{resource}/{n}"),
            None => resource.to_string(),
        };
        let place = match namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "at the cluster scope".to_string(),
        };
        let verbs = if verb == "list" || verb == "watch" {
            "list,watch"
        } else {
            verb
        };
        match self {
            ApiError::Status { code: 403, .. } => {
                let rule = match namespace {
                    Some(_) => format!("add {verbs} on {resource}"),
                    None => format!("a ClusterRole with {verbs} on {resource}"),
                };
                format!("forbidden: cannot {verb} {what} {place} (RBAC: {rule})")
            }
            ApiError::Status {
                code: 401, message, ..
            } => {
                format!("unauthorized: the API server refused the credentials to {verb} {what} {place}: {message}")
            }
            other => format!("cannot {verb} {what} {place}: {other}"),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Status {
                code,
                reason,
                message,
            } => {
                if message.is_empty() {
                    write!(f, "{code} {reason}")
                } else {
                    write!(f, "{code} {reason}: {message}")
                }
            }
            ApiError::Transport(m) => f.write_str(m),
            ApiError::Decode(m) => write!(f, "malformed answer: {m}"),
        }
    }
}

/// A bearer token read from a file, and the file's identity when it was read.
struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(FileStamp, String)>>,
}

/// What tells a changed file: the kubelet swaps a new file in (new inode), an editor may
/// rewrite it in place (new mtime or size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    len: u64,
}

impl TokenFile {
    /// The token, re-read when the file changed since it was read, or when `fresh`.
    fn token(&self, fresh: bool) -> Result<String, ApiError> {
        let fail = |e: std::io::Error| {
            ApiError::Transport(format!(
                "cannot read the token file {}: {}",
                self.path.display(),
                io_message(&e)
            ))
        };
        let meta = std::fs::metadata(&self.path).map_err(fail)?;
        let stamp = FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            len: meta.len(),
        };
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, token)) = cached.as_ref() {
            if *s == stamp && !fresh {
                return Ok(token.clone());
            }
        }
        let token = std::fs::read_to_string(&self.path)
            .map_err(fail)?
            .trim()
            .to_string();
        if cached.is_some() {
            log::info!(target: "hello-path-nudger", "token file {} changed: using the new token", self.path.display());
        }
        *cached = Some((stamp, token.clone()));
        Ok(token)
    }
}

/// The token of an exec plugin, and when it expires (Unix seconds).
struct ExecToken {
    plugin: ExecPlugin,
    cached: Mutex<Option<(String, Option<i64>)>>,
}

impl ExecToken {
    fn token(&self, fresh: bool) -> Result<String, ApiError> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, expiry)) = cached.as_ref() {
            let valid = expiry.is_none_or(|e| clock::unix_now().as_secs() as i64 + 10 < e);
            if valid && !fresh {
                return Ok(token.clone());
            }
        }
        let (token, expiry) = run_exec(&self.plugin)?;
        *cached = Some((token.clone(), expiry));
        Ok(token)
    }
}

/// Runs an exec credential plugin as kubectl does and reads its ExecCredential.
fn run_exec(p: &ExecPlugin) -> Result<(String, Option<i64>), ApiError> {
    let fail = |m: String| ApiError::Transport(format!("exec plugin {}: {m}", p.command));
    let info = format!(
        r#"{{"apiVersion":"{}","kind":"ExecCredential","spec":{{"interactive":false}}}}"#,
        p.api_version
    );
    let out = std::process::Command::new(&p.command)
        .args(&p.args)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .env("KUBERNETES_EXEC_INFO", info)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| fail(io_message(&e)))?;
    if !out.status.success() {
        return Err(fail(format!("exited with {}", out.status)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("its output is not an ExecCredential: {e}")))?;
    let status = v.get("status").unwrap_or(&serde_json::Value::Null);
    let token = status
        .get("token")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| fail("its ExecCredential has no status.token (client certificates from plugins are not supported)".into()))?;
    let expiry = status
        .get("expirationTimestamp")
        .and_then(|t| t.as_str())
        .and_then(clock::parse_rfc3339);
    Ok((token.to_string(), expiry))
}

/// How each request authenticates (besides the TLS client certificate).
enum Credentials {
    None,
    /// A fixed `Authorization` header value.
    Fixed(String),
    File(TokenFile),
    Exec(ExecToken),
}

impl Credentials {
    /// The `Authorization` header value, if any; `fresh` after a 401.
    fn header(&self, fresh: bool) -> Result<Option<String>, ApiError> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Fixed(h) => Ok(Some(h.clone())),
            Credentials::File(f) => f.token(fresh).map(|t| Some(format!("Bearer {t}"))),
            Credentials::Exec(e) => e.token(fresh).map(|t| Some(format!("Bearer {t}"))),
        }
    }

    /// Whether a 401 may be cured by reading the credential again.
    fn renewable(&self) -> bool {
        matches!(self, Credentials::File(_) | Credentials::Exec(_))
    }
}

/// A client of one API server; cheap to clone, shared by every thread.
#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    server: Arc<str>,
    credentials: Arc<Credentials>,
}

/// The lines of a watch stream.
pub(crate) struct WatchStream {
    reader: BufReader<Box<dyn Read + Send>>,
}

impl WatchStream {
    /// The next line (one event) into `line`, without its newline; `Ok(false)` at the end
    /// of the stream. A line longer than 16 MiB is an error.
    pub(crate) fn next_line(&mut self, line: &mut Vec<u8>) -> Result<bool, ApiError> {
        line.clear();
        let n = (&mut self.reader)
            .take(MAX_EVENT_BYTES)
            .read_until(b'\n', line)
            .map_err(|e| {
                ApiError::Transport(format!("the watch stream broke: {}", io_message(&e)))
            })?;
        if n == 0 {
            return Ok(false);
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if n as u64 >= MAX_EVENT_BYTES {
            return Err(ApiError::Decode("a watch event longer than 16 MiB".into()));
        }
        Ok(true)
    }
}

impl Client {
    /// A client for `conn`; fails on TLS material that cannot be used (naming where it came
    /// from).
    pub(crate) fn new(conn: &Connection) -> Result<Client, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(provider);
        match &conn.ca {
            Some(ca) => {
                let certs = certificates(ca)?;
                tls = tls.root_certs(RootCerts::new_with_certs(&certs));
            }
            None => {
                if conn.server.starts_with("https://") && !conn.insecure {
                    return Err(format!(
                        "{}: no certificate-authority(-data) for {} (this image has no system CA bundle); add one, or insecure-skip-tls-verify: true",
                        conn.source, conn.server
                    ));
                }
                tls = tls.root_certs(RootCerts::new_with_certs(&[]));
            }
        }
        if conn.insecure {
            tls = tls.disable_verification(true);
        }
        if let Some((cert, key)) = &conn.client_cert {
            let chain = certificates(cert)?;
            let key = private_key(key)?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(concat!("hello-path-nudger/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(8)
            .build()
            .into();
        let credentials = match &conn.auth {
            Auth::Anonymous => Credentials::None,
            Auth::Token(t) => Credentials::Fixed(format!("Bearer {t}")),
            Auth::Basic { username, password } => Credentials::Fixed(format!(
                "Basic {}",
                encode_base64(format!("{username}:{password}").as_bytes())
            )),
            Auth::TokenFile(path) => Credentials::File(TokenFile {
                path: path.clone(),
                cached: Mutex::new(None),
            }),
            Auth::Exec(plugin) => Credentials::Exec(ExecToken {
                plugin: plugin.clone(),
                cached: Mutex::new(None),
            }),
        };
        // A token that cannot be read at all is a start-up failure, not a retry.
        if let Credentials::File(f) = &credentials {
            f.token(false).map_err(|e| e.to_string())?;
        }
        Ok(Client {
            agent,
            server: conn.server.clone().into(),
            credentials: Arc::new(credentials),
        })
    }

    /// Sends one request; after a 401 with a renewable credential, reads it again and
    /// retries once. Error statuses become `ApiError::Status`.
    fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<(&str, &[u8])>,
        watch: Option<Duration>,
    ) -> Result<http::Response<ureq::Body>, ApiError> {
        let url = format!("{}{}", self.server, path);
        for attempt in 0..2 {
            let fresh = attempt > 0;
            let mut rq = http::Request::builder()
                .method(method.clone())
                .uri(&url)
                .header("Accept", "application/json");
            if let Some(auth) = self.credentials.header(fresh)? {
                rq = rq.header("Authorization", auth);
            }
            if let Some((content_type, _)) = body {
                rq = rq.header("Content-Type", content_type);
            }
            let bytes = body.map(|(_, b)| b.to_vec()).unwrap_or_default();
            let rq = rq
                .body(bytes)
                .map_err(|e| ApiError::Transport(format!("invalid request {method} {url}: {e}")))?;
            let configured = rq.with_agent(&self.agent).configure();
            let configured = match watch {
                // A watch: the head within a minute; the body as long as the server keeps
                // it open (its timeoutSeconds), plus a margin that only a dead peer reaches.
                Some(body_budget) => configured
                    .timeout_recv_response(Some(WATCH_HEAD_TIMEOUT))
                    .timeout_recv_body(Some(body_budget)),
                None => configured.timeout_global(Some(REQUEST_TIMEOUT)),
            };
            let resp = configured
                .build()
                .run()
                .map_err(|e| ApiError::Transport(transport_message(&e)))?;
            let code = resp.status().as_u16();
            if code < 400 {
                return Ok(resp);
            }
            if code == 401 && attempt == 0 && self.credentials.renewable() {
                continue;
            }
            return Err(status_error(code, resp));
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// GET `path` and decode the JSON answer as it streams in (a list is never held whole).
    pub(crate) fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let resp = self.send(http::Method::GET, path, None, None)?;
        let reader = BufReader::new(resp.into_body().into_reader());
        serde_json::from_reader(reader).map_err(|e| {
            if e.is_io() {
                ApiError::Transport(format!("the answer to GET {path} broke off: {e}"))
            } else {
                ApiError::Decode(format!("GET {path}: {e}"))
            }
        })
    }

    /// GET a watch; `body_budget` bounds how long its stream may last.
    pub(crate) fn watch(&self, path: &str, body_budget: Duration) -> Result<WatchStream, ApiError> {
        let resp = self.send(http::Method::GET, path, None, Some(body_budget))?;
        let reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        Ok(WatchStream {
            reader: BufReader::with_capacity(16 << 10, reader),
        })
    }

    /// PATCH `path` with a JSON merge patch; the answer's body is read and dropped. A
    /// request that got no answer (a kept-alive connection the server had closed) is sent
    /// once more: the nudger's merge patches set values, so sending one twice is harmless
    /// (a precondition that no longer holds is a 409, which the caller handles).
    pub(crate) fn merge_patch(&self, path: &str, patch: &str) -> Result<(), ApiError> {
        match self.merge_patch_once(path, patch) {
            Err(ApiError::Transport(_)) => self.merge_patch_once(path, patch),
            other => other,
        }
    }

    fn merge_patch_once(&self, path: &str, patch: &str) -> Result<(), ApiError> {
        let resp = self.send(
            http::Method::PATCH,
            path,
            Some(("application/merge-patch+json", patch.as_bytes())),
            None,
        )?;
        let mut reader = resp.into_body().into_reader();
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| {
            ApiError::Transport(format!(
                "the answer to PATCH {path} broke off: {}",
                io_message(&e)
            ))
        })?;
        Ok(())
    }
}

/// The `Status` of an error answer: its reason and message (else the start of the body).
fn status_error(code: u16, resp: http::Response<ureq::Body>) -> ApiError {
    let text = resp
        .into_body()
        .with_config()
        .limit(MAX_ERROR_BYTES)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let reason = v
        .get("reason")
        .and_then(|r| r.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| default_reason(code).to_string());
    let message = v
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| text.trim().chars().take(200).collect());
    ApiError::Status {
        code,
        reason,
        message,
    }
}

fn default_reason(code: u16) -> &'static str {
    match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Error",
    }
}

fn transport_message(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io_message(io),
        other => other.to_string(),
    }
}

/// The certificates of a PEM bundle; at least one.
fn certificates(pem: &Pem) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem.bytes) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: not a PEM certificate: {e}", pem.origin)),
        }
    }
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", pem.origin));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC, as k3s writes).
fn private_key(pem: &Pem) -> Result<PrivateKey<'static>, String> {
    for item in ureq::tls::parse_pem(&pem.bytes) {
        match item {
            Ok(PemItem::PrivateKey(k)) => return Ok(k),
            Ok(_) => {}
            Err(e) => return Err(format!("{}: not a PEM private key: {e}", pem.origin)),
        }
    }
    Err(format!("{}: no PEM private key in it", pem.origin))
}

/// Standard base64 with padding.
fn encode_base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeconfig::decode_base64;

    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "admin:secret", "é\u{0}x"] {
            let e = encode_base64(s.as_bytes());
            assert_eq!(decode_base64(&e).unwrap(), s.as_bytes(), "{s}: {e}");
        }
        assert_eq!(encode_base64(b"admin:pw"), "YWRtaW46cHc=");
    }

    #[test]
    fn token_file_is_read_again_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("nudger-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "one\n").unwrap();
        let f = TokenFile {
            path: path.clone(),
            cached: Mutex::new(None),
        };
        assert_eq!(f.token(false).unwrap(), "one");
        // As the kubelet does: a new file renamed over the old one.
        std::fs::write(dir.join("new"), "two").unwrap();
        std::fs::rename(dir.join("new"), &path).unwrap();
        assert_eq!(f.token(false).unwrap(), "two");
        std::fs::remove_file(&path).unwrap();
        assert!(f
            .token(false)
            .unwrap_err()
            .to_string()
            .contains("no such file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pem_errors_name_their_origin() {
        let pem = Pem {
            bytes: b"nothing".to_vec(),
            origin: "users[u].user.client-key-data".into(),
        };
        assert_eq!(
            private_key(&pem).unwrap_err(),
            "users[u].user.client-key-data: no PEM private key in it"
        );
        assert_eq!(
            certificates(&pem).unwrap_err(),
            "users[u].user.client-key-data: no PEM certificate in it"
        );
    }

    #[test]
    fn api_error_display_and_labels() {
        let e = ApiError::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: "no".into(),
        };
        assert_eq!(e.to_string(), "403 Forbidden: no");
        assert_eq!(e.code_label(), "403");
        assert_eq!(ApiError::Transport("x".into()).code_label(), "transport");
        assert_eq!(
            e.explain("list", "secrets", None, Some("shop")),
            "forbidden: cannot list secrets in namespace shop (RBAC: add list,watch on secrets)"
        );
        assert_eq!(
            e.explain("patch", "pods", Some("web-1"), Some("shop")),
            "forbidden: cannot patch pods/web-1 in namespace shop (RBAC: add patch on pods)"
        );
        assert_eq!(
            e.explain("watch", "pods", None, None),
            "forbidden: cannot watch pods at the cluster scope (RBAC: a ClusterRole with list,watch on pods)"
        );
        assert_eq!(
            ApiError::Transport("connection refused".into()).explain(
                "list",
                "pods",
                None,
                Some("a")
            ),
            "cannot list pods in namespace a: connection refused"
        );
    }
}
