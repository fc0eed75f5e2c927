//! The single-threaded request loop: it owns the `tiny_http::Server`, answers every request,
//! and between requests handles signals, the drain on shutdown and the re-reads of the
//! secret file that `events.rs` asks for and makes (on its reader thread: the loop never
//! opens the file itself). It blocks until one of them, a request, or a deadline it set
//! itself comes (no periodic wake-up while idle, SPEC §1), and keeps the listener alive
//! (SPEC §8).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use tiny_http::{Header, Incoming, Refused, Request, Response, ServerOptions};

use crate::config::{format_secs, Config, Exposure, Mode};
use crate::events::{Done, Events};
use crate::metrics::{self, Refusals, Snapshot};
use crate::remote::Remote;
use crate::routes::{self, Reply, Route, View};
use crate::secret::{io_message, Credential, Outcome, ReadError, Trigger};
use crate::{clock, Error};

/// First pause before the accept thread is started again after `accept()` failed; it
/// doubles up to `MAX_BACKOFF` while the restart keeps failing.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Binds `--listen-addr`, with the connections' timeouts (`--idle-timeout`,
/// `--header-timeout`); the only step that can fail before serving.
pub(crate) fn bind(config: &Config) -> Result<Listener, Error> {
    let addr = config.listen_addr;
    let options = ServerOptions {
        idle_timeout: config.idle_timeout,
        header_timeout: config.header_timeout,
        // tiny_http's own 405 to CONNECT names what the routes serve
        allow: routes::ALLOW,
        // (send_timeout: tiny_http's 2 s without progress)
        ..ServerOptions::default()
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
    let server = tiny_http::Server::from_listener_with(socket, None, options).map_err(|e| {
        Error::Listen {
            addr,
            message: e.to_string(),
        }
    })?;
    Ok(Listener {
        server,
        headers,
        spare,
        local,
        broken: None,
    })
}

/// The listening socket and the `tiny_http` server reading from it.
///
/// tiny_http 0.12 ends its accept thread on the first `accept()` error (EMFILE, ENFILE, …)
/// and reports it once through `recv`. A spare handle on the same socket keeps its backlog
/// alive, so a new accept thread can be started on it later (`accept_again`) without
/// losing queued connections, while the connections accepted before are still served.
pub(crate) struct Listener {
    server: tiny_http::Server,
    /// The response headers every request needs, built once at bind.
    headers: Headers,
    spare: TcpListener,
    local: SocketAddr,
    /// While `accept()` is failing: when the accept thread is started again, and the pause
    /// after that if it fails again.
    broken: Option<(Instant, Duration)>,
}

impl Listener {
    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle that wakes `next` from another thread.
    pub(crate) fn waker(&self) -> tiny_http::Waker {
        self.server.waker()
    }

    /// The next request (or refusal), waiting until `deadline` (`None`: as long as it takes)
    /// or a wake-up.
    fn next(&mut self, deadline: Option<Instant>) -> Option<Incoming> {
        let mut deadline = deadline;
        if let Some((at, _)) = self.broken {
            if Instant::now() >= at {
                self.restart();
            }
        }
        if let Some((at, _)) = self.broken {
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        match self.server.recv_until(deadline) {
            Ok(rq) => rq,
            Err(e) => {
                error!(
                    "the listener stopped accepting connections: {}; restarting it",
                    io_message(&e)
                );
                self.broken = Some((Instant::now() + FIRST_BACKOFF, FIRST_BACKOFF));
                None
            }
        }
    }

    /// Starts a new accept thread on the spare handle, once descriptors are free again.
    ///
    /// The headroom matters: restarting while the table is still full would only fail
    /// again (the next `accept()` would, and end the accept loop again).
    fn restart(&mut self) {
        let started = self
            .headroom()
            .and_then(|()| self.spare.try_clone().map_err(|e| io_message(&e)))
            .and_then(|s| self.server.accept_again(s).map_err(|e| io_message(&e)));
        let pause = self.broken.map_or(FIRST_BACKOFF, |(_, p)| p);
        match started {
            Ok(()) => {
                self.broken = None;
                info!("the listener accepts connections again on {}", self.local);
            }
            Err(e) => {
                if pause == FIRST_BACKOFF {
                    warn!("cannot restart the listener yet: {e}; retrying");
                }
                let pause = (pause * 2).min(MAX_BACKOFF);
                self.broken = Some((Instant::now() + pause, pause));
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
    /// Requests answered, tiny_http's refusals included.
    requests: u64,
    /// tiny_http's refusals, by status.
    refused: Refusals,
    ready: bool,
    /// `POST /-/reload` requests just routed, for `serve` to ask their read.
    reloads_asked: Vec<Request>,
    /// `POST /-/reload` requests waiting for their read, with its ticket (`Events::ask`).
    reloads_waiting: Vec<(u64, Request)>,
}

/// Serves until SIGTERM/SIGINT (plus `--shutdown-delay`).
pub(crate) fn serve(
    config: &Config,
    remote: &Remote,
    credential: Credential,
    mut listener: Listener,
    events: &mut Events,
    start_unix: Duration,
) {
    events.follow(config);
    events.ring_server(listener.waker());
    let mut svc = Service {
        config,
        remote,
        credential,
        headers: listener.headers.clone(),
        start_unix,
        requests: 0,
        refused: Refusals::default(),
        ready: true,
        reloads_asked: Vec::new(),
        reloads_waiting: Vec::new(),
    };
    let mut stop_at: Option<Instant> = None;
    loop {
        let news = events.take();
        let now = Instant::now();
        if let (Some(sig), None) = (news.stop, stop_at) {
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
        if news.hup {
            match config.mode {
                Mode::Reload => {
                    info!("Received SIGHUP: re-reading the credential.");
                    events.ask(Trigger::Explicit);
                }
                Mode::FailFast => {
                    warn!("Received SIGHUP: ignored, the service was started without --reload.")
                }
            }
        }
        if news.reread {
            events.ask(Trigger::Watch);
        }
        for done in news.reads {
            svc.apply(done, events);
        }
        let deadline = match (stop_at, events.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(rq) = listener.next(deadline) {
            svc.handle(rq);
            for rq in std::mem::take(&mut svc.reloads_asked) {
                let ticket = events.ask(Trigger::Explicit);
                svc.reloads_waiting.push((ticket, rq));
            }
        }
    }
}

impl Service<'_> {
    /// Applies a finished read (unless `events` holds it back for a retry) and answers the
    /// `POST /-/reload` requests it was read for.
    fn apply(&mut self, done: Done, events: &mut Events) {
        if events.holds(&done) {
            return; // a file in the middle of an update: read again shortly, nothing to count
        }
        let result = self.check(done.trigger, done.result);
        if done.trigger == Trigger::Explicit {
            let (answered, waiting) = std::mem::take(&mut self.reloads_waiting)
                .into_iter()
                .partition(|(ticket, _)| *ticket <= done.upto);
            self.reloads_waiting = waiting;
            for (_, rq) in answered {
                self.respond(rq, routes::reload_reply(&result), &self.headers.text);
            }
        }
    }

    /// Applies one read of the source; `Ok(generation in use)` unless rejected.
    fn check(&mut self, trigger: Trigger, read: Result<String, ReadError>) -> Result<u64, String> {
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

    /// Answers a request, or counts and logs one that tiny_http refused (and answered).
    fn handle(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Request(rq) => self.answer(rq),
            Incoming::Refused(r) => self.note_refusal(&r),
        }
    }

    /// A request tiny_http answered on its own (400, 408, 413, …, 405 for CONNECT): one
    /// line like a request's, e.g. `400 refused: Content-Length given twice (POST /x from
    /// 10.0.0.7:51234)`, its path written as the request log does (control characters as
    /// `%XX`).
    fn note_refusal(&mut self, r: &Refused) {
        self.requests += 1;
        self.refused.count(r.status());
        if self.config.log_requests {
            let line = match (r.method(), r.url()) {
                (Some(m), Some(u)) => format!("{m} {} ", routes::loggable_path(u)),
                _ => String::new(),
            };
            let from = match r.remote_addr() {
                Some(a) => format!("from {a}"),
                None => "from a local socket".to_string(),
            };
            info!("{} refused: {} ({line}{from})", r.status(), r.reason());
        }
    }

    /// Answers a request as the routes say, logged and counted.
    fn answer(&mut self, rq: Request) {
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
        let (reply, content_type) = match route {
            Route::Reply(r) => (r, &self.headers.text),
            Route::Reload => {
                // answered when its read is done (`apply`): the loop does not wait for it
                self.reloads_asked.push(rq);
                return;
            }
            Route::Metrics => {
                let c = &self.credential;
                let body = metrics::render(&Snapshot {
                    requests_total: self.requests,
                    refused: self.refused.by_status(),
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
        self.respond(rq, reply, content_type);
    }

    /// Answers `rq` with `reply` and the headers every answer carries.
    fn respond(&self, rq: Request, reply: Reply, content_type: &Header) {
        let no_store = routes::no_store(rq.url());
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
