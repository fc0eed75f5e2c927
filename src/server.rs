//! The single-threaded request loop: it owns the `tiny_http::Server`, answers every request,
//! and between requests (`recv_timeout`) handles signals, the drain on shutdown and the
//! periodic re-read of the secret file. It also keeps the listener alive (SPEC §8).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use tiny_http::{Header, Request, Response, ServerOptions};

use crate::config::{format_secs, Config, Exposure, Mode};
use crate::metrics::{self, Snapshot};
use crate::remote::Remote;
use crate::routes::{self, Reply, Route, View};
use crate::secret::{io_message, Credential, Outcome, Trigger};
use crate::signals::Signals;
use crate::{clock, Error};

/// Longest wait for a request before the loop looks at signals and timers again: a SIGHUP
/// or SIGTERM is acted on within this, at the cost of 40 idle wake-ups a second (about
/// 0.1 % of one core, measured by scripts/bench.sh).
const TICK: Duration = Duration::from_millis(25);

/// Binds `--listen-addr`, with the connections' timeouts (`--idle-timeout`,
/// `--header-timeout`); the only step that can fail before serving.
pub(crate) fn bind(config: &Config) -> Result<Listener, Error> {
    let addr = config.listen_addr;
    let options = ServerOptions {
        idle_timeout: config.idle_timeout,
        header_timeout: config.header_timeout,
    };
    let listen_err = |e: io::Error| Error::Listen {
        addr,
        message: io_message(&e),
    };
    let socket = TcpListener::bind(addr).map_err(listen_err)?;
    let local = socket.local_addr().map_err(listen_err)?;
    let spare = socket.try_clone().map_err(listen_err)?;
    let headers = Headers::new(&hostname());
    // tiny_http's own answers (400 for a malformed request, 505, ...) carry X-Served-By too.
    tiny_http::set_own_answer_headers(headers.served_by.iter().cloned().collect());
    let current = tiny_http::Server::from_listener_with(socket, None, options).map_err(|e| {
        Error::Listen {
            addr,
            message: e.to_string(),
        }
    })?;
    Ok(Listener {
        current,
        options,
        headers,
        spare,
        local,
        retired: Vec::new(),
        broken_since: None,
        backoff: TICK,
    })
}

/// The listening socket and the `tiny_http` servers reading from it.
///
/// tiny_http 0.12 ends its accept thread on the first `accept()` error (EMFILE, ENFILE, …)
/// and reports it once through `recv`. A spare handle on the same socket keeps its backlog
/// alive, so a new server can be started on it later without losing queued connections,
/// while requests of connections the old server had accepted are still drained.
pub(crate) struct Listener {
    current: tiny_http::Server,
    /// The connections' timeouts, for every server started on the socket.
    options: ServerOptions,
    /// The response headers every request needs, built once at bind.
    headers: Headers,
    spare: TcpListener,
    local: SocketAddr,
    retired: Vec<tiny_http::Server>,
    broken_since: Option<Instant>,
    backoff: Duration,
}

/// Servers kept to drain keep-alive connections after a restart of the accept thread.
const MAX_RETIRED: usize = 8;

impl Listener {
    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next request, waiting at most `timeout`.
    fn next(&mut self, timeout: Duration) -> Option<Request> {
        for old in &self.retired {
            if let Ok(Some(rq)) = old.try_recv() {
                return Some(rq);
            }
        }
        if let Some(since) = self.broken_since {
            if since.elapsed() >= self.backoff {
                self.restart();
            }
        }
        let timeout = if self.retired.is_empty() {
            timeout
        } else {
            timeout.min(Duration::from_millis(10))
        };
        match self.current.recv_timeout(timeout) {
            Ok(rq) => rq,
            Err(e) => {
                error!(
                    "the listener stopped accepting connections: {}; restarting it",
                    io_message(&e)
                );
                self.broken_since = Some(Instant::now());
                None
            }
        }
    }

    /// Starts a new accept thread on the spare handle, once descriptors are free again.
    ///
    /// The headroom matters: a new server needs descriptors of its own (its epoll instance
    /// and wake-up socket) and tiny_http a second one for every connection it accepts (it
    /// drops a connection that cannot get it and ends the accept loop again), so restarting
    /// while the table is still full would only fail again.
    fn restart(&mut self) {
        let started = self
            .headroom()
            .and_then(|()| self.spare.try_clone().map_err(|e| io_message(&e)))
            .and_then(|s| {
                tiny_http::Server::from_listener_with(s, None, self.options)
                    .map_err(|e| e.to_string())
            });
        match started {
            Ok(server) => {
                let old = std::mem::replace(&mut self.current, server);
                self.retired.push(old);
                if self.retired.len() > MAX_RETIRED {
                    // Not dropped: its accept thread has already ended, and Server::drop would
                    // only connect to our own backlog to wake it — blocking this loop while a
                    // flood keeps the backlog full. A few hundred bytes stay allocated.
                    std::mem::forget(self.retired.remove(0));
                }
                self.broken_since = None;
                self.backoff = TICK;
                info!("the listener accepts connections again on {}", self.local);
            }
            Err(e) => {
                if self.backoff == TICK {
                    warn!("cannot restart the listener yet: {e}; retrying");
                }
                self.broken_since = Some(Instant::now());
                self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    /// Ok when `HEADROOM` descriptors can be opened now (they are closed again at once).
    fn headroom(&self) -> Result<(), String> {
        let mut held = Vec::with_capacity(HEADROOM);
        for _ in 0..HEADROOM {
            held.push(self.spare.try_clone().map_err(|e| io_message(&e))?);
        }
        Ok(())
    }
}

/// Free descriptors required before the accept thread is started again.
const HEADROOM: usize = 8;

/// The service's state between requests.
struct Service<'a> {
    config: &'a Config,
    remote: &'a Remote,
    credential: Credential,
    headers: Headers,
    start_unix: Duration,
    requests: u64,
    ready: bool,
}

/// Serves until SIGTERM/SIGINT (plus `--shutdown-delay`).
pub(crate) fn serve(
    config: &Config,
    remote: &Remote,
    credential: Credential,
    mut listener: Listener,
    signals: &Signals,
    start_unix: Duration,
) {
    let watching = config.mode == Mode::Reload && config.source.can_change();
    let mut svc = Service {
        config,
        remote,
        credential,
        headers: listener.headers.clone(),
        start_unix,
        requests: 0,
        ready: true,
    };
    let mut next_watch = Instant::now() + config.watch_interval;
    let mut stop_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if let (Some(sig), None) = (signals.stop(), stop_at) {
            svc.ready = false;
            stop_at = Some(now + config.shutdown_delay);
            info!(
                "Received {sig}: /readyz now answers 503; serving {} more second(s) before exit.",
                format_secs(config.shutdown_delay)
            );
        }
        if stop_at.is_some_and(|t| now >= t) {
            info!("Web service stopped.");
            // Dropping a tiny_http::Server connects to its own address to wake its accept
            // thread; with a full backlog (a connection flood) that connect blocks for
            // seconds, past SPEC §5's 1 s. The process ends right after this: nothing in the
            // listener needs an orderly close.
            std::mem::forget(listener);
            return;
        }
        if signals.take_hup() {
            match config.mode {
                Mode::Reload => {
                    info!("Received SIGHUP: re-reading the credential.");
                    let _ = svc.check(Trigger::Explicit);
                }
                Mode::FailFast => {
                    warn!("Received SIGHUP: ignored, the service was started without --reload.")
                }
            }
        }
        if watching && now >= next_watch {
            svc.check(Trigger::Watch).ok();
            next_watch = Instant::now() + config.watch_interval;
        }
        let mut timeout = TICK;
        if watching {
            timeout = timeout.min(next_watch.saturating_duration_since(Instant::now()));
        }
        if let Some(t) = stop_at {
            timeout = timeout.min(t.saturating_duration_since(Instant::now()));
        }
        if let Some(rq) = listener.next(timeout) {
            svc.handle(rq);
        }
    }
}

impl Service<'_> {
    /// Re-reads the source and applies the result; `Ok(generation in use)` unless rejected.
    fn check(&mut self, trigger: Trigger) -> Result<u64, String> {
        let read = self.config.source.read();
        let remote = self.remote;
        let outcome =
            self.credential
                .observe(read, |v| remote.accepts(v), trigger, clock::unix_now());
        let generation = self.credential.generation();
        match outcome {
            Outcome::Unchanged => Ok(generation),
            Outcome::Confirmed => {
                info!("secret confirmed: the source holds the credential in use (generation {generation})");
                Ok(generation)
            }
            Outcome::Swapped { generation } => {
                match self.config.exposure {
                    Exposure::Exposed => info!(
                        "secret reloaded: generation {generation} in use (mysecret value is {})",
                        self.credential.value()
                    ),
                    Exposure::Masked => info!("secret reloaded: generation {generation} in use"),
                }
                Ok(generation)
            }
            Outcome::Rejected { reason } => {
                warn!("secret rejected: {reason}; generation {generation} stays in use");
                Err(reason)
            }
        }
    }

    fn handle(&mut self, rq: Request) {
        self.requests += 1;
        let method = rq.method().as_str().to_string();
        if self.config.log_requests {
            info!("{method} {}", routes::loggable_path(rq.url()));
        }
        let view = View {
            ready: self.ready,
            generation: self.credential.generation(),
            secret: self.credential.value(),
            exposure: self.config.exposure,
            mode: self.config.mode,
        };
        // (a request with an invalid Content-Length never gets here: tiny_http refuses it)
        let route = routes::route(&method, rq.url(), &view);
        let no_store = routes::no_store(rq.url());
        let (reply, content_type) = match route {
            Route::Reply(r) => (r, &self.headers.text),
            Route::Reload => (
                routes::reload_reply(&self.check(Trigger::Explicit)),
                &self.headers.text,
            ),
            Route::Metrics => {
                let c = &self.credential;
                let body = metrics::render(&Snapshot {
                    requests_total: self.requests,
                    reload_successes: c.successes,
                    reload_failures: c.failures,
                    last_reload_successful: c.last_successful,
                    generation: c.generation(),
                    last_success_unix: c.last_success_unix,
                    start_unix: self.start_unix,
                    ready: self.ready,
                });
                (
                    Reply {
                        status: 200,
                        body,
                        allow: None,
                    },
                    &self.headers.metrics,
                )
            }
        };
        let mut response =
            Response::from_data(reply.body.into_bytes()).with_status_code(reply.status);
        response.add_header(content_type.clone());
        if let Some(served_by) = &self.headers.served_by {
            response.add_header(served_by.clone());
        }
        if let Some(allow) = reply.allow.and_then(|v| header("Allow", v)) {
            response.add_header(allow);
        }
        if no_store {
            response.add_header(self.headers.no_store.clone());
        }
        if !self.ready {
            // shutting down: the client is told to take its next request elsewhere, and
            // tiny_http ends the connection after this answer
            response.add_header(self.headers.close.clone());
        }
        // A client that went away is its own problem: the loop goes on.
        let _ = rq.respond(response);
    }
}

/// The response headers every request needs, parsed once at start.
#[derive(Clone)]
struct Headers {
    text: Header,
    metrics: Header,
    /// `X-Served-By: <hostname>`; `None` only for a host name that is no valid header value.
    served_by: Option<Header>,
    /// `Cache-Control: no-store`, on the answers that change (SPEC §4).
    no_store: Header,
    /// `Connection: close`, on every answer while shutting down.
    close: Header,
}

impl Headers {
    fn new(hostname: &str) -> Headers {
        // Constants that parse: see the test below.
        let fixed = |name, v| header(name, v).expect("a valid header");
        Headers {
            text: fixed("Content-Type", routes::TEXT),
            metrics: fixed("Content-Type", metrics::CONTENT_TYPE),
            served_by: header("X-Served-By", hostname),
            no_store: fixed("Cache-Control", "no-store"),
            close: fixed("Connection", "close"),
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

/// The host name (the pod name in Kubernetes), read once at start.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| s.is_ascii() && !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_headers_parse() {
        let h = Headers::new("hello-path-7d9f-abcde");
        assert_eq!(h.text.value.as_str(), routes::TEXT);
        assert_eq!(h.metrics.value.as_str(), metrics::CONTENT_TYPE);
        assert_eq!(h.served_by.unwrap().value.as_str(), "hello-path-7d9f-abcde");
        assert_eq!(h.no_store.value.as_str(), "no-store");
        assert_eq!(h.close.value.as_str(), "close");
    }
}
