//! `/metrics`, `/healthz` and `/readyz` over the vendored tiny_http, on a thread of their
//! own that sleeps in `recv` while nobody asks.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use tiny_http::{Header, Response, ServerOptions};

use crate::kubeconfig::io_message;
use crate::metrics::{self, Metrics};

/// A bound listener, not serving yet.
pub(crate) struct Endpoints {
    server: tiny_http::Server,
    local: SocketAddr,
}

/// An answer: status, content type, body.
fn route(method: &str, path: &str, metrics: &Metrics) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return (405, TEXT, "method not allowed\n".into());
    }
    match path {
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => match metrics.readiness() {
            Ok(()) => (200, TEXT, "ok\n".into()),
            Err(reasons) => (503, TEXT, format!("not ready:\n{reasons}\n")),
        },
        "/metrics" => (200, metrics::CONTENT_TYPE, metrics.render()),
        _ => (404, TEXT, "not found: /metrics, /healthz, /readyz\n".into()),
    }
}

impl Endpoints {
    /// Binds `addr`.
    pub(crate) fn bind(addr: SocketAddr) -> Result<Endpoints, String> {
        let fail = |e: std::io::Error| format!("cannot listen on {addr}: {}", io_message(&e));
        let socket = TcpListener::bind(addr).map_err(fail)?;
        let local = socket.local_addr().map_err(fail)?;
        let server = tiny_http::Server::from_listener_with(socket, None, ServerOptions::default())
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        Ok(Endpoints { server, local })
    }

    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answers requests on a thread of its own. If the listener dies (tiny_http ends its
    /// accept thread on an accept error), the process exits 1 rather than live on without
    /// probes: the kubelet restarts it.
    pub(crate) fn serve(self, metrics: Arc<Metrics>) -> Result<(), String> {
        std::thread::Builder::new()
            .name("endpoints".into())
            .spawn(move || loop {
                match self.server.recv() {
                    Ok(rq) => {
                        let path = rq.url().split('?').next().unwrap_or("").to_string();
                        let method = rq.method().as_str().to_string();
                        let (code, content_type, body) = route(&method, &path, &metrics);
                        let mut resp = Response::from_string(body).with_status_code(code);
                        for (name, value) in [("Content-Type", content_type), ("Cache-Control", "no-store")] {
                            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                                resp.add_header(h);
                            }
                        }
                        // A client gone before its answer is no failure of ours.
                        let _ = rq.respond(resp);
                    }
                    Err(e) => {
                        log::error!(target: "hello-path-nudger", "the listener on {} stopped: {}; exiting", self.local, io_message(&e));
                        std::process::exit(1);
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start a thread: {}", io_message(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn routes() {
        let m = Metrics::new(Duration::ZERO);
        let id = m.informer("pods in namespace shop".into());
        assert_eq!(route("GET", "/healthz", &m).0, 200);
        let (code, _, body) = route("GET", "/readyz", &m);
        assert_eq!(
            (code, body.as_str()),
            (
                503,
                "not ready:\nwaiting for the first list of pods in namespace shop\n"
            )
        );
        m.listed(id);
        assert_eq!(route("HEAD", "/readyz", &m).0, 200);
        let (code, ct, body) = route("GET", "/metrics", &m);
        assert_eq!((code, ct), (200, metrics::CONTENT_TYPE));
        assert!(body.contains("hello_path_nudger_ready 1"));
        assert_eq!(route("POST", "/healthz", &m).0, 405);
        assert_eq!(route("GET", "/", &m).0, 404);
    }
}
